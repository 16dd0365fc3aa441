//! Buffers taken back once the bytes cut from them are dropped.

use std::collections::VecDeque;

use bytes::BytesMut;

/// Buffers whose bytes were handed out as [`bytes::Bytes`] slices, each taken back
/// for new bytes once none of those slices is alive (`BytesMut::try_reclaim`, no
/// `unsafe`) instead of freed and allocated again: memory over the allocator's
/// "huge" size comes fresh from the kernel, which faults it in and zeroes it, and
/// that is slow on the VMs we run on. Used by the log's readers (the buffers batches
/// are read into) and the processor's record writer (the chunks records are written
/// into). At most `max` are kept; past that the oldest is let go, so a slice held for
/// long cannot pin the memory of the rest.
#[derive(Debug)]
pub struct ReusedBuffers {
    /// Oldest first: the first whose slices are likely all dropped.
    kept: VecDeque<BytesMut>,
    max: usize,
}

impl ReusedBuffers {
    pub fn new(max: usize) -> Self {
        ReusedBuffers {
            kept: VecDeque::new(),
            max,
        }
    }

    /// A buffer with room for `want` bytes: the oldest kept one none of whose slices
    /// is alive, else a new one of `capacity` bytes (at least `want`).
    pub fn take(&mut self, want: usize, capacity: usize) -> BytesMut {
        match self.kept.iter_mut().position(|b| b.try_reclaim(want)) {
            Some(i) => self.kept.remove(i).unwrap_or_default(),
            None => BytesMut::with_capacity(capacity.max(want)),
        }
    }

    /// Keeps `buf`, whose bytes have been split off and handed out, for a later
    /// [`take`](Self::take).
    pub fn keep(&mut self, buf: BytesMut) {
        self.kept.push_back(buf);
        if self.kept.len() > self.max {
            self.kept.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_taken_back_only_once_its_slices_are_dropped() {
        let mut pool = ReusedBuffers::new(2);
        let mut a = pool.take(100, 1000);
        let at = a.as_ptr();
        a.extend_from_slice(&[1; 100]);
        let slice = a.split().freeze();
        pool.keep(a);
        // The slice alive: a new buffer, and the slice's bytes untouched.
        let mut b = pool.take(1000, 1000);
        assert_ne!(b.as_ptr(), at);
        b.extend_from_slice(&[2; 1000]);
        assert!(slice.iter().all(|&x| x == 1));
        drop(slice);
        // Dropped: the first buffer again, whole.
        let c = pool.take(1000, 1000);
        assert_eq!(c.as_ptr(), at);
        assert!(c.capacity() >= 1000);
        assert!(pool.is_empty());
        // No more than `max` kept, the oldest let go.
        for _ in 0..3 {
            let mut d = BytesMut::with_capacity(10);
            d.extend_from_slice(b"x");
            let _held = d.split().freeze();
            pool.keep(d);
        }
        assert_eq!(pool.len(), 2);
    }
}
