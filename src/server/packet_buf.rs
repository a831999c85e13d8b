//! Assembles one initial packet that arrives in pieces, holding at most the packet itself.
//!
//! Packets up to [`INLINE`] bytes (every SSLRequest, GSSENCRequest and CancelRequest with a
//! key of up to 256 bytes) stay in an inline array; only a longer packet (a StartupMessage) is
//! given a heap buffer, sized from its length word and never more than 10004 bytes.

use crate::error::DecodeError;
use crate::wire::{MIN_PACKET_LEN, be_u32};

/// Length word, code, pid and a 256-byte key.
pub(crate) const INLINE: usize = 4 + 4 + 4 + 256;

#[derive(Clone, Debug)]
pub(crate) struct PacketBuf {
    inline: [u8; INLINE],
    heap: Vec<u8>,
    len: usize,
    /// The packet's total length once its length word is in; 0 before.
    target: usize,
}

impl Default for PacketBuf {
    fn default() -> Self {
        PacketBuf {
            inline: [0; INLINE],
            heap: Vec::new(),
            len: 0,
            target: 0,
        }
    }
}

/// A packet taken out of the buffer.
#[allow(clippy::large_enum_variant)] // inline on purpose: no allocation for small packets
pub(crate) enum Assembled {
    /// The packet's bytes in an inline array, and its length.
    Inline([u8; INLINE], usize),
    /// The packet's bytes on the heap.
    Heap(Vec<u8>),
}

/// The state of the packet being assembled after a push.
pub(crate) enum Fill {
    /// More bytes are needed.
    Incomplete,
    /// The whole packet is in.
    Complete,
}

impl PacketBuf {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes held (the bound the property tests check).
    pub(crate) fn held(&self) -> usize {
        self.len
    }

    /// Takes the assembled packet out, leaving the buffer empty. An inline packet is copied
    /// out by value (no allocation); a heap one is handed over without copying.
    pub(crate) fn take(&mut self) -> Assembled {
        let out = if self.target > INLINE {
            Assembled::Heap(std::mem::take(&mut self.heap))
        } else {
            Assembled::Inline(self.inline, self.len)
        };
        self.clear();
        out
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.target = 0;
        self.heap = Vec::new();
    }

    /// The most bytes that can be pushed without going past the packet.
    pub(crate) fn wanted(&self) -> usize {
        if self.target == 0 {
            MIN_PACKET_LEN - self.len
        } else {
            self.target - self.len
        }
    }

    /// Appends bytes from `data` up to the end of the packet; returns how many were taken and
    /// whether the packet is complete. An invalid length word is an error as soon as it is in.
    pub(crate) fn push(&mut self, data: &[u8]) -> Result<(usize, Fill), DecodeError> {
        let mut taken = 0;
        if self.target == 0 {
            let n = (4 - self.len).min(data.len());
            self.inline[self.len..self.len + n].copy_from_slice(&data[..n]);
            self.len += n;
            taken += n;
            if self.len < 4 {
                return Ok((taken, Fill::Incomplete));
            }
            self.target = crate::wire::check_length(be_u32(&self.inline[..4]))?;
            if self.target > INLINE {
                let mut heap = Vec::with_capacity(self.target);
                heap.extend_from_slice(&self.inline[..4]);
                self.heap = heap;
            }
        }
        let n = (self.target - self.len).min(data.len() - taken);
        let chunk = &data[taken..taken + n];
        if self.target > INLINE {
            self.heap.extend_from_slice(chunk);
        } else {
            self.inline[self.len..self.len + n].copy_from_slice(chunk);
        }
        self.len += n;
        taken += n;
        let fill = if self.len == self.target {
            Fill::Complete
        } else {
            Fill::Incomplete
        };
        Ok((taken, fill))
    }
}
