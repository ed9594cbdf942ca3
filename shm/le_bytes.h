// Little-endian integers in byte buffers, for wire messages (§9.1, §11)
// that are built and parsed byte by byte rather than overlaid with structs.
// Callers check the buffer length first; these functions do not.
#ifndef SHMHUB_SHM_LE_BYTES_H_
#define SHMHUB_SHM_LE_BYTES_H_

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace shmhub::shm {

template <typename T>
inline void PutLe(uint8_t* out, T value) {
  static_assert(std::is_unsigned_v<T>);
  for (size_t i = 0; i < sizeof(T); ++i) out[i] = static_cast<uint8_t>(value >> (8 * i));
}

template <typename T>
inline T GetLe(const uint8_t* in) {
  static_assert(std::is_unsigned_v<T>);
  T value = 0;
  for (size_t i = 0; i < sizeof(T); ++i) {
    value = static_cast<T>(value | static_cast<T>(in[i]) << (8 * i));
  }
  return value;
}

}  // namespace shmhub::shm

#endif  // SHMHUB_SHM_LE_BYTES_H_
