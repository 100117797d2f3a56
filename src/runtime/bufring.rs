//! A provided buffer ring (`IORING_REGISTER_PBUF_RING`): the kernel picks a
//! receive buffer only when data arrives, so an idle connection holds none.
//! We hand each buffer back as soon as its bytes are processed.
//!
//! Memory: one mapping reserves address space for the ring's full capacity;
//! only `initial` buffers are offered at start, and none is touched until
//! the kernel writes into it (16 shards used to start with 64 MiB of
//! zeroed buffers). When receives run dry (`-ENOBUFS`) the pool grows, up
//! to the capacity, by offering more of the reserved buffers. After a
//! storm it shrinks back ([`BufRing::shrink_to`]: buffers above the target
//! are not offered again when they come back, and their memory goes back
//! to the kernel), and a shard with no input for a while hands back the
//! memory of every buffer ([`BufRing::release_idle`]).
//!
//! Handing memory back with `MADV_DONTNEED` is safe only for buffers the
//! kernel cannot be writing: with `DEFER_TASKRUN` a receive copies into a
//! provided buffer in our own thread, inside `io_uring_enter` (a socket
//! receive waits by poll and runs as task work; it never goes to an io-wq
//! worker), and buffers handed to us by completions are recycled before
//! the shard calls these (they are called between turns, on the tick).

use io_uring::types::BufRingEntry;
use io_uring::Submitter;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

/// An anonymous private mapping between two inaccessible guard pages,
/// unmapped on drop. The guards make an overrun fault instead of writing
/// into a neighbour, and keep the kernel from merging the mapping with
/// adjacent ones, so it is one line of `/proc/PID/smaps` whose resident
/// size is the pool's (tests/memory_comes_back.rs reads it).
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    guard: usize,
}

/// The page size: guard pages and `madvise` ranges are whole pages (64 KiB
/// on some arm64 kernels, not 4 KiB).
fn page() -> usize {
    // SAFETY: sysconf has no memory effects.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}

impl Mapping {
    fn new(len: usize) -> io::Result<Self> {
        let guard = page();
        let whole = len + 2 * guard;
        // SAFETY: anonymous private mapping with no address hint; the
        // result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                whole,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(p as *mut u8).ok_or_else(|| io::Error::other("mmap returned null"))?;
        // SAFETY: `base + guard .. + len` lies inside the mapping above.
        let ptr = unsafe { NonNull::new_unchecked(base.as_ptr().add(guard)) };
        let mapping = Self { ptr, len, guard };
        // SAFETY: the range is page-aligned and inside our mapping; on
        // failure `mapping`'s drop unmaps the whole of it.
        let r = unsafe {
            libc::mprotect(
                ptr.as_ptr() as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(mapping)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the guard page before `ptr` and the one after `len` are
        // exactly what mmap returned.
        unsafe {
            libc::munmap(
                self.ptr.as_ptr().sub(self.guard) as *mut libc::c_void,
                self.len + 2 * self.guard,
            )
        };
    }
}

pub struct BufRing {
    ring: Mapping,
    bufs: Mapping,
    entries: u16,
    buf_size: usize,
    /// Buffers offered to the kernel (in the ring, or handed to us by a
    /// completion and not yet recycled).
    offered: u16,
    /// Bids never offered or taken back by a shrink, to offer next.
    spare: Vec<u16>,
    /// Bids below this have been offered at some point.
    next_bid: u16,
    /// Buffers above this many are taken back when they are recycled.
    target: u16,
    /// Buffers the kernel filled since the last `release_idle`.
    filled: u64,
    /// Buffers filled in this turn, and the most in one turn since the
    /// last [`BufRing::take_peak`]: what the pool must be able to offer at
    /// once, to tell a quiet shard from a busy one.
    turn_filled: u16,
    peak: u16,
    /// Our copy of the tail; published with a release store.
    tail: u16,
    bgid: u16,
}

impl BufRing {
    /// Register a ring of `entries` (a power of two) slots for buffer group
    /// `bgid`, offering `initial` buffers of `buf_size` bytes.
    pub fn new(
        submitter: &Submitter<'_>,
        bgid: u16,
        entries: u16,
        initial: u16,
        buf_size: usize,
    ) -> io::Result<Self> {
        if !entries.is_power_of_two() || initial == 0 || initial > entries {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring entries must be a power of two >= initial buffers > 0",
            ));
        }
        let ring = Mapping::new(entries as usize * std::mem::size_of::<BufRingEntry>())?;
        let bufs = Mapping::new(entries as usize * buf_size)?;
        // SAFETY: `ring` is page-aligned, zeroed (fresh anonymous mapping)
        // and sized for `entries` entries. It outlives the registration:
        // the shard calls `unregister` before dropping us, and the ring
        // itself (whose teardown ends the registration) is dropped with it.
        unsafe {
            submitter.register_buf_ring_with_flags(ring.ptr.as_ptr() as u64, entries, bgid, 0)?;
        }
        let mut r = Self {
            ring,
            bufs,
            entries,
            buf_size,
            offered: 0,
            spare: Vec::new(),
            next_bid: 0,
            target: entries,
            filled: 0,
            turn_filled: 0,
            peak: 0,
            tail: 0,
            bgid,
        };
        r.grow(initial);
        Ok(r)
    }

    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    pub fn offered(&self) -> u16 {
        self.offered
    }

    /// Offer up to `n` more buffers (and stop any shrink); false when
    /// already at capacity.
    pub fn grow(&mut self, n: u16) -> bool {
        self.target = self.entries;
        let n = n.min(self.entries - self.offered);
        for _ in 0..n {
            let bid = match self.spare.pop() {
                Some(bid) => bid,
                None => {
                    self.next_bid += 1;
                    self.next_bid - 1
                }
            };
            self.push(bid);
            self.offered += 1;
        }
        self.publish();
        n > 0
    }

    /// Shrink towards `target` buffers: from now on a recycled buffer above
    /// it is not offered again and its memory goes back to the kernel.
    /// Buffers nobody uses stay offered (they hold no memory once
    /// `release_idle` ran).
    pub fn shrink_to(&mut self, target: u16) {
        self.target = target.max(1);
    }

    /// Hand the memory of every buffer back to the kernel (they stay
    /// offered; a receive faults a page back in). Call only between turns,
    /// with every buffer from a completion recycled (see the module doc).
    /// Returns false if there was nothing to release.
    pub fn release_idle(&mut self) -> bool {
        if self.filled == 0 {
            return false;
        }
        self.filled = 0;
        // No buffer in the range is being read by us (all recycled) or
        // written by the kernel (only inside our own io_uring_enter).
        self.hand_back(0, self.next_bid as usize * self.buf_size);
        true
    }

    /// Give the memory of the whole pages inside `bufs[start..start + len]`
    /// back to the kernel. Only whole pages inside: the kernel rounds a
    /// range out to pages, and with a buffer size that is not a multiple
    /// of the page a neighbour's bytes (maybe a receive not yet handled)
    /// would be zeroed. The caller says that nothing in the range is in
    /// use (by us or the kernel).
    fn hand_back(&self, start: usize, len: usize) {
        let page = page();
        let from = start.next_multiple_of(page);
        let to = ((start + len).min(self.bufs.len) / page) * page;
        if to > from {
            // SAFETY: `from..to` lies inside the `bufs` mapping, and the
            // caller vouches that nothing in it is in use.
            unsafe {
                libc::madvise(
                    self.bufs.ptr.as_ptr().add(from).cast(),
                    to - from,
                    libc::MADV_DONTNEED,
                )
            };
        }
    }

    /// A completion handed us buffer `bid`, filled.
    #[inline]
    pub fn filled(&mut self) {
        self.filled += 1;
        self.turn_filled = self.turn_filled.saturating_add(1);
    }

    /// A loop turn ended: remember its buffer count if it is the peak.
    #[inline]
    pub fn end_turn(&mut self) {
        self.peak = self.peak.max(self.turn_filled);
        self.turn_filled = 0;
    }

    /// The most buffers filled in one turn since the last call.
    pub fn take_peak(&mut self) -> u16 {
        std::mem::take(&mut self.peak)
    }

    /// Buffer `bid`'s first `len` bytes, as filled by a receive.
    #[inline]
    pub fn buf(&mut self, bid: u16, len: usize) -> &mut [u8] {
        assert!(bid < self.entries && len <= self.buf_size);
        // SAFETY: bid < entries, so the range lies in the `bufs` mapping;
        // the kernel no longer writes it: it was handed to us by a
        // completion and is not offered again until `recycle`.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.bufs.ptr.as_ptr().add(bid as usize * self.buf_size),
                len,
            )
        }
    }

    fn push(&mut self, bid: u16) {
        let idx = (self.tail & (self.entries - 1)) as usize;
        let base = self.ring.ptr.as_ptr() as *mut BufRingEntry;
        // SAFETY: idx < entries, inside the ring mapping. The kernel only
        // reads entries between its head and our published tail, and this
        // slot is past the tail until `publish`.
        unsafe {
            let e = &mut *base.add(idx);
            e.set_addr(self.bufs.ptr.as_ptr().add(bid as usize * self.buf_size) as u64);
            e.set_len(self.buf_size as u32);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        let base = self.ring.ptr.as_ptr() as *const BufRingEntry;
        // SAFETY: the tail field lives in entry 0 of our ring; the kernel
        // reads it with acquire semantics, so a release store publishes the
        // entries written before it.
        unsafe {
            let tail = BufRingEntry::tail(base) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// Give buffer `bid` back to the kernel (or, while shrinking, take it
    /// out of the pool).
    #[inline]
    pub fn recycle(&mut self, bid: u16) {
        if self.offered > self.target && bid < self.entries {
            self.offered -= 1;
            self.spare.push(bid);
            // Ours: handed over by a completion, not offered again.
            self.hand_back(bid as usize * self.buf_size, self.buf_size);
            return;
        }
        self.push(bid);
        self.publish();
    }

    /// Unregister from the ring that registered us. Must be called before
    /// drop when the ring outlives this pool.
    pub fn unregister(&self, submitter: &Submitter<'_>) {
        let _ = submitter.unregister_buf_ring(self.bgid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::IoUring;

    fn pool(entries: u16, initial: u16) -> (IoUring, BufRing) {
        pool_of(entries, initial, 4096)
    }

    fn pool_of(entries: u16, initial: u16, size: usize) -> (IoUring, BufRing) {
        let ring = IoUring::new(8).expect("io_uring");
        let bufs = BufRing::new(&ring.submitter(), 0, entries, initial, size).expect("buf ring");
        (ring, bufs)
    }

    #[test]
    fn a_shrink_never_zeroes_a_neighbour() {
        // 6 KiB buffers straddle pages: releasing bid 2 (12..18 KiB) may
        // hand back only the page at 12..16 KiB, not 16..20 where bid 3
        // starts.
        let (ring, mut b) = pool_of(8, 8, 6144);
        b.buf(3, 6144).fill(0xAB);
        b.buf(2, 6144).fill(0xCD);
        b.shrink_to(4);
        b.recycle(2);
        assert!(b.buf(3, 6144).iter().all(|&x| x == 0xAB));
        // Its own whole page went.
        assert!(b.buf(2, 4096).iter().all(|&x| x == 0));
        b.unregister(&ring.submitter());
    }

    #[test]
    fn grows_then_shrinks_back_as_buffers_return() {
        let (ring, mut b) = pool(64, 4);
        assert_eq!(b.offered(), 4);
        assert!(b.grow(12));
        assert_eq!(b.offered(), 16);
        b.shrink_to(4);
        // Buffers handed to us and recycled above the target leave the
        // pool, and are offered again first when it grows.
        for bid in [15, 3, 9] {
            b.recycle(bid);
        }
        assert_eq!(b.offered(), 13);
        assert_eq!(b.spare, vec![15, 3, 9]);
        assert!(b.grow(2));
        assert_eq!(b.offered(), 15);
        assert_eq!(b.spare, vec![15]);
        assert!(!b.grow(100) || b.offered() == 64);
        assert_eq!(b.offered(), 64);
        b.unregister(&ring.submitter());
    }

    #[test]
    fn released_buffers_give_their_memory_back() {
        let (ring, mut b) = pool(8, 8);
        b.buf(5, 4096).fill(0xAB);
        b.filled();
        assert!(b.release_idle());
        // Nothing filled since: nothing to release.
        assert!(!b.release_idle());
        // MADV_DONTNEED on private anonymous memory: the page is gone and
        // reads as zero (the kernel fills it again on the next receive).
        assert!(b.buf(5, 4096).iter().all(|&x| x == 0));
        // A buffer taken out by a shrink is released too.
        b.buf(2, 4096).fill(0xCD);
        b.shrink_to(4);
        b.recycle(2);
        assert!(b.buf(2, 4096).iter().all(|&x| x == 0));
        b.unregister(&ring.submitter());
    }
}
