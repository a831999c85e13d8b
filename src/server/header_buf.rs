//! Assembles a PROXY protocol header that arrives in pieces, holding at most the header itself.
//!
//! Headers up to [`INLINE`] bytes (every v1 header, a v2 header with addresses and a few
//! TLVs) stay in an inline array; only a longer v2 header is given a heap buffer, sized from
//! its length field and never more than 16 + the policy's `max_v2_len` bytes.

use crate::wire::Decoded;
use crate::wire::proxy::{
    ProxyError, ProxyHeader, ProxyLimits, V1_MAX_LEN, V2_FIXED_LEN, decode_proxy_header,
};

/// v1's 107 bytes fit, and a v2 header over IPv6 (52 bytes) with 200 bytes of TLVs.
pub(crate) const INLINE: usize = 256;

#[derive(Clone, Debug)]
pub(crate) struct HeaderBuf {
    inline: [u8; INLINE],
    heap: Vec<u8>,
    len: usize,
    /// The most bytes that can be taken now without passing the header's end.
    want: usize,
}

impl Default for HeaderBuf {
    fn default() -> Self {
        HeaderBuf {
            inline: [0; INLINE],
            heap: Vec::new(),
            len: 0,
            want: V2_FIXED_LEN.min(crate::wire::proxy::V1_MIN_LEN),
        }
    }
}

/// What a push made of the header.
pub(crate) enum HeaderFill<'a> {
    /// More bytes are needed; `taken` bytes of the input were held (all of it, unless the
    /// header's bound was reached).
    Incomplete { taken: usize },
    /// The header is complete; `used` bytes of the input were part of it.
    Complete {
        header: ProxyHeader<'a>,
        used: usize,
    },
}

impl HeaderBuf {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The most bytes to read next without reading past the header.
    pub(crate) fn wanted(&self) -> usize {
        self.want
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.heap = Vec::new();
    }

    fn bytes(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }

    /// The bytes that can still belong to the header after what is held: up to v1's 107
    /// bytes, v2's fixed part, or v2's length once it is known.
    fn room(&self, limits: &ProxyLimits) -> usize {
        let held = self.bytes();
        let end = match held.first() {
            Some(b'P') => V1_MAX_LEN,
            _ if held.len() < V2_FIXED_LEN => V2_FIXED_LEN,
            _ => {
                let len = usize::from(u16::from_be_bytes([held[14], held[15]]));
                V2_FIXED_LEN + len.min(usize::from(limits.max_v2_len))
            }
        };
        end.saturating_sub(held.len())
    }

    /// Takes bytes of `data` that can belong to the header and decodes what is held.
    pub(crate) fn push<'s>(
        &'s mut self,
        data: &[u8],
        limits: &ProxyLimits,
    ) -> Result<HeaderFill<'s>, ProxyError> {
        let start = self.len;
        let mut taken = 0;
        loop {
            let n = self.room(limits).min(data.len() - taken);
            self.append(&data[taken..taken + n]);
            taken += n;
            // Decoding borrows the buffer; the result is checked before `self` is touched.
            let outcome = match decode_proxy_header(self.bytes(), limits)? {
                Decoded::Complete(_, len) => Some(len - start),
                Decoded::Partial(more) => {
                    self.want = more;
                    None
                }
            };
            if let Some(used) = outcome {
                let Ok(Decoded::Complete(header, _)) = decode_proxy_header(self.bytes(), limits)
                else {
                    unreachable!("decoded a moment ago")
                };
                return Ok(HeaderFill::Complete { header, used });
            }
            // v2's fixed part just completed: its length tells how much more can be taken.
            if taken == data.len() || n == 0 {
                return Ok(HeaderFill::Incomplete { taken });
            }
        }
    }

    fn append(&mut self, chunk: &[u8]) {
        let end = self.len + chunk.len();
        if self.heap.is_empty() && end <= INLINE {
            self.inline[self.len..end].copy_from_slice(chunk);
        } else {
            if self.heap.is_empty() {
                self.heap.reserve_exact(end.max(INLINE));
                self.heap.extend_from_slice(&self.inline[..self.len]);
            }
            self.heap.extend_from_slice(chunk);
        }
        self.len = end;
    }
}
