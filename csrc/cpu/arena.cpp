#include "arena.h"

#include <sys/mman.h>

#include <new>

namespace fastrnn::cpu {
namespace {

constexpr std::size_t kHugePage = std::size_t(2) << 20;

char* map(std::size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
  if (bytes >= 2 * kHugePage) madvise(p, bytes, MADV_HUGEPAGE);  // fewer TLB misses
#endif
  return static_cast<char*>(p);
}

void unmap(char* p, std::size_t bytes) {
  if (p) munmap(p, bytes);
}

struct Arena {
  char* data = nullptr;
  std::size_t bytes = 0;
  ~Arena() { unmap(data, bytes); }
};

thread_local Arena t_arena;

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

}  // namespace

ScratchLease::ScratchLease(std::size_t bytes) {
  bytes = round_up(bytes < 64 ? 64 : bytes, 4096);
  if (bytes > kRetainBytes) {
    data_ = map(bytes);
    own_bytes_ = bytes;
    return;
  }
  Arena& a = t_arena;
  if (a.bytes < bytes) {
    const std::size_t grown = round_up(bytes + bytes / 4, kHugePage);
    const std::size_t want = grown > kRetainBytes ? bytes : grown;
    char* fresh = map(want);  // may throw: the old arena stays intact
    unmap(a.data, a.bytes);
    a.data = fresh;
    a.bytes = want;
  }
  data_ = a.data;
}

ScratchLease::~ScratchLease() {
  if (own_bytes_) unmap(data_, own_bytes_);
}

std::size_t release_scratch() {
  Arena& a = t_arena;
  const std::size_t n = a.bytes;
  unmap(a.data, a.bytes);
  a.data = nullptr;
  a.bytes = 0;
  return n;
}

std::size_t scratch_bytes() { return t_arena.bytes; }

}  // namespace fastrnn::cpu
