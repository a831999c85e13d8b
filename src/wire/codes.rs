//! The numbers of the protocol's first packets: request codes, bounds, the protocol version,
//! ALPN, SQLSTATEs.

/// The request code of a CancelRequest (1234.5678).
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// The request code of an SSLRequest (1234.5679).
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
/// The request code of a GSSENCRequest (1234.5680).
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;

/// The smallest valid initial packet: the length word and one `int32`.
pub const MIN_PACKET_LEN: usize = 8;
/// The largest valid initial packet: PostgreSQL's `MAX_STARTUP_PACKET_LENGTH` (10000) plus the
/// length word.
pub const MAX_PACKET_LEN: usize = 10_004;
/// The longest cancel key PostgreSQL 18 accepts (protocol 3.2).
pub const MAX_CANCEL_KEY_LEN: usize = 256;
/// The first byte of a TLS handshake record: a connection that starts with it is direct SSL.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// The ALPN protocol name PostgreSQL registers and requires for direct SSL.
pub const ALPN_PROTOCOL: &[u8] = b"postgresql";
/// [`ALPN_PROTOCOL`] in the wire format of the ALPN extension (length-prefixed list).
pub const ALPN_WIRE: &[u8] = b"\x0apostgresql";

/// A frontend/backend protocol version as the StartupMessage carries it (major in the high 16
/// bits, minor in the low 16 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolVersion(u32);

impl ProtocolVersion {
    /// Protocol 3.0, spoken by every PostgreSQL since 7.4.
    pub const V3_0: ProtocolVersion = ProtocolVersion::new(3, 0);
    /// Protocol 3.2, PostgreSQL 18 (variable-length cancel keys).
    pub const V3_2: ProtocolVersion = ProtocolVersion::new(3, 2);
    /// The oldest version a PostgreSQL 18 server accepts.
    pub const EARLIEST: ProtocolVersion = ProtocolVersion::V3_0;
    /// The newest version pgssl's server side speaks.
    pub const LATEST: ProtocolVersion = ProtocolVersion::V3_2;

    /// The version `major.minor`.
    pub const fn new(major: u16, minor: u16) -> Self {
        ProtocolVersion(((major as u32) << 16) | minor as u32)
    }

    /// The version from its wire value.
    pub const fn from_u32(raw: u32) -> Self {
        ProtocolVersion(raw)
    }

    /// The wire value.
    pub const fn as_u32(self) -> u32 {
        self.0
    }

    /// The major version (3 for every version in use).
    pub const fn major(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The minor version.
    pub const fn minor(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major(), self.minor())
    }
}

/// SQLSTATE codes pgssl uses, with PostgreSQL's names.
pub mod sqlstate {
    /// `08P01` protocol_violation.
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// `0A000` feature_not_supported.
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// `28000` invalid_authorization_specification.
    pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
    /// `22023` invalid_parameter_value.
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    /// `57P03` cannot_connect_now.
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    /// `28P01` invalid_password.
    pub const INVALID_PASSWORD: &str = "28P01";
}

#[inline]
pub(crate) fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
