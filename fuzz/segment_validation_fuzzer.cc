// libFuzzer target for attach-time validation (format §3, C-H10): any bytes,
// taken as a whole segment file, are either accepted or refused with an
// error; never a crash, a hang or a read outside them (ASan, UBSan).
// Seeds: segment_validation_seeds.cc, run by the build.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "shm/segment_validation.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // ValidateSegment wants 8-byte alignment (a mapping is page-aligned), which
  // libFuzzer does not promise. A copy of exactly `size` bytes keeps ASan's
  // redzone right behind the last byte.
  std::unique_ptr<uint8_t[]> copy(new uint8_t[size]);
  if (size != 0) std::memcpy(copy.get(), data, size);
  shmhub::shm::ValidateSegment({copy.get(), size}, size).IgnoreError();
  return 0;
}
