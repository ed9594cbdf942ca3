// Access to the reference implementation's golden vectors in
// ../shared/seed-vectors/. They are read at test time and never copied into
// the repository; tests skip with a clear message when the folder is absent.
#ifndef SHMHUB_TESTS_TESTING_SEED_VECTORS_H_
#define SHMHUB_TESTS_TESTING_SEED_VECTORS_H_

#include <optional>
#include <string>

#include "gtest/gtest.h"

namespace shmhub::testing {

// The folder holding the vectors (SHMHUB_SEED_VECTORS_DIR at build time,
// overridable with the environment variable of the same name).
std::string SeedVectorsDir();

// The bytes of `name`, or nullopt when the file cannot be read.
std::optional<std::string> ReadSeedVector(const std::string& name);

}  // namespace shmhub::testing

// Loads seed vector `name` into std::string `var`, or skips the test.
#define SHMHUB_LOAD_SEED_VECTOR_OR_SKIP(var, name)                              \
  std::string var;                                                               \
  if (auto loaded_##var = ::shmhub::testing::ReadSeedVector(name)) {             \
    var = std::move(*loaded_##var);                                              \
  } else {                                                                       \
    GTEST_SKIP() << "seed vector " << name << " not found in "                   \
                 << ::shmhub::testing::SeedVectorsDir()                          \
                 << " (set SHMHUB_SEED_VECTORS_DIR to the shared/seed-vectors folder)"; \
  }

#endif  // SHMHUB_TESTS_TESTING_SEED_VECTORS_H_
