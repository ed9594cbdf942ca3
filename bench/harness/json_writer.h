// JsonWriter: builds one indented JSON document in memory, for the
// benchmark driver's result file (no JSON library ships with Debian's
// toolchain set we build on).
//
// The caller nests Begin/End calls correctly and puts a Key before every
// value inside an object; commas and indentation are the writer's job.
// Strings are escaped per RFC 8259. Doubles that are not finite (a ratio
// over a zero baseline) are written as null, since JSON has no NaN.
// Not thread-safe.
#ifndef SHMHUB_BENCH_HARNESS_JSON_WRITER_H_
#define SHMHUB_BENCH_HARNESS_JSON_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace shmhub::bench {

class JsonWriter {
 public:
  void BeginObject();
  void EndObject();
  void BeginArray();
  void EndArray();
  void Key(absl::string_view key);

  void String(absl::string_view value);
  void Int(int64_t value);
  void Uint(uint64_t value);
  // Up to 6 significant digits: benchmark numbers carry no more precision.
  void Double(double value);
  void Bool(bool value);
  void Null();

  // Convenience: Key + value.
  void Field(absl::string_view key, absl::string_view value) { Key(key); String(value); }
  void Field(absl::string_view key, const char* value) { Key(key); String(value); }
  void FieldInt(absl::string_view key, int64_t value) { Key(key); Int(value); }
  void FieldUint(absl::string_view key, uint64_t value) { Key(key); Uint(value); }
  void FieldDouble(absl::string_view key, double value) { Key(key); Double(value); }
  void FieldBool(absl::string_view key, bool value) { Key(key); Bool(value); }

  // The document so far, with a trailing newline once the outermost value
  // is closed.
  const std::string& str() const { return out_; }

 private:
  void BeforeValue();
  void Open(char bracket);
  void Close(char bracket);
  void Newline();

  std::string out_;
  // Per open container: whether it already holds an element.
  std::vector<bool> has_element_;
  bool after_key_ = false;
};

// `value` as a JSON string literal, quotes included.
std::string JsonQuote(absl::string_view value);

}  // namespace shmhub::bench

#endif  // SHMHUB_BENCH_HARNESS_JSON_WRITER_H_
