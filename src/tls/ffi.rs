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

/// Whether the server asked for a client certificate during a handshake, and whether one was
/// available to send (libpq's `ssl_cert_requested` / `ssl_cert_sent`).
#[derive(Debug, Default)]
pub(crate) struct CertRequestFlags {
    pub(crate) requested: std::sync::atomic::AtomicBool,
    pub(crate) sent: std::sync::atomic::AtomicBool,
}

unsafe extern "C" {
    fn SSL_CTX_set_cert_cb(
        ctx: *mut openssl_sys::SSL_CTX,
        cb: Option<unsafe extern "C" fn(*mut openssl_sys::SSL, *mut std::ffi::c_void) -> c_int>,
        arg: *mut std::ffi::c_void,
    );
}

/// The ex_data slot of each client `Ssl` that holds its [`CertRequestFlags`].
pub(crate) fn cert_request_index()
-> Result<openssl::ex_data::Index<openssl::ssl::Ssl, CertRequestFlags>, ErrorStack> {
    static INDEX: std::sync::OnceLock<
        openssl::ex_data::Index<openssl::ssl::Ssl, CertRequestFlags>,
    > = std::sync::OnceLock::new();
    if let Some(i) = INDEX.get() {
        return Ok(*i);
    }
    let i = openssl::ssl::Ssl::new_ex_index::<CertRequestFlags>()?;
    Ok(*INDEX.get_or_init(|| i))
}

unsafe extern "C" fn record_cert_request(
    ssl: *mut openssl_sys::SSL,
    _arg: *mut std::ffi::c_void,
) -> c_int {
    use std::sync::atomic::Ordering;
    // SAFETY: OpenSSL calls this during the handshake of `ssl`, which is live and not used
    // elsewhere for the duration of the call.
    let ssl = unsafe { openssl::ssl::SslRef::from_ptr_mut(ssl) };
    if let Ok(index) = cert_request_index()
        && let Some(flags) = ssl.ex_data(index)
    {
        flags.requested.store(true, Ordering::SeqCst);
        if ssl.certificate().is_some() {
            flags.sent.store(true, Ordering::SeqCst);
        }
    }
    1
}

/// Installs the callback that fills each connection's [`CertRequestFlags`].
pub(crate) fn record_cert_requests(ctx: &mut openssl::ssl::SslContextBuilder) {
    // SAFETY: the context is live and owned by the builder; the callback is a plain function
    // with OpenSSL's signature and takes no argument.
    unsafe {
        SSL_CTX_set_cert_cb(
            ctx.as_ptr(),
            Some(record_cert_request),
            std::ptr::null_mut(),
        )
    }
}

/// The raw bytes and type of a subjectAltName entry (dNSName: 2, iPAddress: 7), without the
/// UTF-8 check of the `openssl` crate, so that libpq's embedded-NUL rule can be applied.
pub(crate) fn general_name_raw(name: &openssl::x509::GeneralNameRef) -> Option<(c_int, Vec<u8>)> {
    // SAFETY: `name` borrows a live GENERAL_NAME; its `d` member is an ASN1_STRING for the
    // dNSName and iPAddress types (checked before use), read only and copied out.
    unsafe {
        let gn = name.as_ptr();
        let kind = (*gn).type_;
        if kind != openssl_sys::GEN_DNS && kind != openssl_sys::GEN_IPADD {
            return None;
        }
        let s = (*gn).d as *mut ASN1_STRING;
        let data = openssl_sys::ASN1_STRING_get0_data(s);
        let len = openssl_sys::ASN1_STRING_length(s);
        if data.is_null() || len < 0 {
            return Some((kind, Vec::new()));
        }
        Some((
            kind,
            std::slice::from_raw_parts(data, len as usize).to_vec(),
        ))
    }
}

unsafe extern "C" {
    fn X509_get_signature_info(
        x: *mut openssl_sys::X509,
        mdnid: *mut c_int,
        pknid: *mut c_int,
        secbits: *mut c_int,
        flags: *mut u32,
    ) -> c_int;
}

/// The NID of the digest of a certificate's signature as PostgreSQL determines it
/// (`X509_get_signature_info`, which also reads the hash of RSA-PSS parameters); `None` when
/// OpenSSL cannot determine the signature algorithm. `NID_undef` (0) for signatures without a
/// separate digest, such as Ed25519.
pub(crate) fn signature_digest_nid(cert: &openssl::x509::X509Ref) -> Option<c_int> {
    let mut md: c_int = 0;
    // SAFETY: `cert` is a live certificate; OpenSSL only reads it (and may fill its own
    // cached signature info); the out-pointers for unused fields may be null.
    let ok = unsafe {
        X509_get_signature_info(
            cert.as_ptr(),
            &mut md,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    (ok == 1).then_some(md)
}
