#include "tests/testing/seed_vectors.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace shmhub::testing {

std::string SeedVectorsDir() {
  if (const char* env = std::getenv("SHMHUB_SEED_VECTORS_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  return SHMHUB_SEED_VECTORS_DIR;
}

std::optional<std::string> ReadSeedVector(const std::string& name) {
  std::ifstream in(SeedVectorsDir() + "/" + name, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

}  // namespace shmhub::testing
