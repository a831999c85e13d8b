//! The one module with `unsafe`: the few OpenSSL and libc calls the `openssl` crate does not
//! bind. Each block has a `// SAFETY:` note; everything else in pgssl is safe code.
#![allow(unsafe_code)]

use std::os::raw::{c_int, c_ulong};

use foreign_types::ForeignTypeRef;
use openssl::asn1::Asn1StringRef;
use openssl::error::ErrorStack;
use openssl::x509::X509NameRef;
use openssl_sys::{ASN1_STRING, BIO, X509_NAME};

/// `ASN1_STRFLGS_RFC2253`: ESC_2253 | ESC_CTRL | ESC_MSB | UTF8_CONVERT | DUMP_UNKNOWN | DUMP_DER.
const ASN1_STRFLGS_RFC2253: c_ulong = 0x1 | 0x2 | 0x4 | 0x10 | 0x100 | 0x200;
const ASN1_STRFLGS_ESC_MSB: c_ulong = 0x4;
const ASN1_STRFLGS_UTF8_CONVERT: c_ulong = 0x10;
/// `XN_FLAG_RFC2253`: the string flags, SEP_COMMA_PLUS, DN_REV, FN_SN, DUMP_UNKNOWN_FIELDS.
const XN_FLAG_RFC2253: c_ulong = ASN1_STRFLGS_RFC2253 | (1 << 16) | (1 << 20) | (1 << 24);

unsafe extern "C" {
    fn X509_NAME_print_ex(
        out: *mut BIO,
        nm: *const X509_NAME,
        indent: c_int,
        flags: c_ulong,
    ) -> c_int;
    fn ASN1_STRING_print_ex(out: *mut BIO, s: *const ASN1_STRING, flags: c_ulong) -> c_int;
    fn geteuid() -> u32;
}

/// The process's effective user id.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid() takes no arguments, cannot fail and touches no memory of ours.
    unsafe { geteuid() }
}

/// An OpenSSL memory BIO, freed on drop.
struct MemBio(*mut BIO);

impl MemBio {
    fn new() -> Result<MemBio, ErrorStack> {
        openssl_sys::init();
        // SAFETY: BIO_s_mem() returns a static method table; BIO_new returns an owned BIO or
        // null, which is checked.
        let bio = unsafe { openssl_sys::BIO_new(openssl_sys::BIO_s_mem()) };
        if bio.is_null() {
            Err(ErrorStack::get())
        } else {
            Ok(MemBio(bio))
        }
    }

    fn contents(&self) -> Vec<u8> {
        let mut ptr = std::ptr::null_mut();
        // SAFETY: self.0 is a live memory BIO; BIO_get_mem_data stores a pointer to its
        // internal buffer (valid until the BIO is written to or freed) and returns its length.
        // The bytes are copied out at once.
        unsafe {
            let len = openssl_sys::BIO_get_mem_data(self.0, &mut ptr);
            if ptr.is_null() || len <= 0 {
                return Vec::new();
            }
            std::slice::from_raw_parts(ptr as *const u8, len as usize).to_vec()
        }
    }
}

impl Drop for MemBio {
    fn drop(&mut self) {
        // SAFETY: self.0 was returned by BIO_new and is freed exactly once, here.
        unsafe { openssl_sys::BIO_free_all(self.0) }
    }
}

/// The name in RFC 2253 form, as PostgreSQL prints a peer's DN (`X509_NAME_print_ex` with
/// `XN_FLAG_RFC2253`): `CN=ssltestuser-dn,OU=Testing,OU=Engineering,O=PGDG`. Bytes, so the
/// caller can refuse an embedded NUL.
pub(crate) fn name_rfc2253(name: &X509NameRef) -> Result<Vec<u8>, ErrorStack> {
    let bio = MemBio::new()?;
    // SAFETY: both pointers are live for the call (`name` is borrowed, `bio` owned); the
    // function only reads the name and appends to the BIO.
    let r = unsafe { X509_NAME_print_ex(bio.0, name.as_ptr(), 0, XN_FLAG_RFC2253) };
    if r < 0 {
        return Err(ErrorStack::get());
    }
    Ok(bio.contents())
}

/// One name entry's value printed as PostgreSQL's pg_stat_ssl does (`ASN1_STRING_print_ex`
/// with the RFC 2253 escapes but UTF-8 left unescaped).
pub(crate) fn asn1_string_pg(s: &Asn1StringRef) -> Result<Vec<u8>, ErrorStack> {
    let bio = MemBio::new()?;
    let flags = (ASN1_STRFLGS_RFC2253 & !ASN1_STRFLGS_ESC_MSB) | ASN1_STRFLGS_UTF8_CONVERT;
    // SAFETY: both pointers are live for the call; the function reads the string and appends
    // to the BIO.
    let r = unsafe { ASN1_STRING_print_ex(bio.0, s.as_ptr(), flags) };
    if r < 0 {
        return Err(ErrorStack::get());
    }
    Ok(bio.contents())
}
