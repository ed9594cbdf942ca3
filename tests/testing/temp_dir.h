// A private directory for one test, removed with everything in it when the
// TempDir goes out of scope. Lives under /dev/shm when that exists, so
// segments made in tests are real tmpfs mappings like in production.
#ifndef SHMHUB_TESTS_TESTING_TEMP_DIR_H_
#define SHMHUB_TESTS_TESTING_TEMP_DIR_H_

#include <string>

namespace shmhub::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string File(const std::string& name) const;

 private:
  std::string path_;
};

}  // namespace shmhub::testing

#endif  // SHMHUB_TESTS_TESTING_TEMP_DIR_H_
