//! A provided buffer ring (`IORING_REGISTER_PBUF_RING`): the kernel picks a
//! receive buffer only when data arrives, so an idle connection holds none.
//! We hand each buffer back as soon as its bytes are processed.
//!
//! Memory: one mapping reserves address space for the ring's full capacity;
//! only `initial` buffers are offered (and touched) at start. When receives
//! run dry (`-ENOBUFS`) the pool grows, up to the capacity, by offering
//! more of the reserved buffers.

use io_uring::types::BufRingEntry;
use io_uring::Submitter;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

/// An anonymous private mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: anonymous private mapping with no address hint; the
        // result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p as *mut u8).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned.
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }
}

pub struct BufRing {
    ring: Mapping,
    bufs: Mapping,
    entries: u16,
    buf_size: usize,
    /// Buffers offered to the kernel so far (bids 0..offered).
    offered: u16,
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

    /// Offer up to `n` more buffers; false when already at capacity.
    pub fn grow(&mut self, n: u16) -> bool {
        let n = n.min(self.entries - self.offered);
        for _ in 0..n {
            let bid = self.offered;
            // Touch the buffer now so that resident memory is paid at
            // start (or growth), not as a surprise under load.
            self.buf(bid, self.buf_size).fill(0);
            self.push(bid);
            self.offered += 1;
        }
        self.publish();
        n > 0
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

    /// Give buffer `bid` back to the kernel.
    #[inline]
    pub fn recycle(&mut self, bid: u16) {
        self.push(bid);
        self.publish();
    }

    /// Unregister from the ring that registered us. Must be called before
    /// drop when the ring outlives this pool.
    pub fn unregister(&self, submitter: &Submitter<'_>) {
        let _ = submitter.unregister_buf_ring(self.bgid);
    }
}
