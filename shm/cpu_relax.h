// CpuRelax: the body of every spin-wait on the segment (the ring's D-2 guard,
// the links' waits). Tells the core we are spinning: saves power and, on SMT,
// yields the pipeline to a sibling thread that may be the one we wait for.
#ifndef SHMHUB_SHM_CPU_RELAX_H_
#define SHMHUB_SHM_CPU_RELAX_H_

namespace shmhub::shm {

inline void CpuRelax() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#else
#error "the hub format supports only x86-64 and AArch64 (format §1.1)"
#endif
}

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_CPU_RELAX_H_
