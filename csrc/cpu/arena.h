// Scratch memory of the CPU kernels: one arena per calling thread, kept between
// calls.
//
// Each call used to allocate its buffers anew; what the allocator handed back
// (fresh pages that fault in on first touch, or heap chunks whose addresses
// depended on what ran before) made the same call slower or faster depending on
// the process's history. The arena makes the state a call runs in the same from
// the first call on: the memory is reused (faulted in once, transparent huge pages
// requested for large arenas), and buffers are carved at 64-byte alignment with a
// stagger so that no two of them share the same offset within a 4 KiB page (stores
// to one would otherwise alias loads from the other).
//
// An arena only grows (up to kRetainBytes; a larger call gets memory of its own,
// returned at its end). release_scratch() gives the calling thread's memory back.
#pragma once

#include <cstddef>

#include "fastrnn/config.h"

namespace fastrnn::cpu {

// Arenas larger than this are not kept after the call that needed them.
constexpr std::size_t kRetainBytes = std::size_t(1) << 30;

// Scratch of at least `bytes` bytes (64-byte aligned) for the duration of one call
// on this thread. Throws std::bad_alloc when the memory cannot be had.
class ScratchLease {
 public:
  explicit ScratchLease(std::size_t bytes);
  ~ScratchLease();
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;
  char* data() const { return data_; }

 private:
  char* data_ = nullptr;
  std::size_t own_bytes_ = 0;  // > 0: memory of this lease alone (too large to keep)
};

// Frees the calling thread's arena; returns the bytes it held.
std::size_t release_scratch();

// Bytes held by the calling thread's arena.
std::size_t scratch_bytes();

}  // namespace fastrnn::cpu
