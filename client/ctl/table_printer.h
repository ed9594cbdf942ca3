// TablePrinter: aligned plain-text tables for people, as shmhubctl prints
// them. Columns are as wide as their widest cell; numbers read best
// right-aligned, so a column can ask for that. No borders, two spaces
// between columns, a header row in capitals.
// RenderKeyValues does the same for one object shown as "key  value" lines.
//
// Not thread-safe; one printer per table.
#ifndef SHMHUB_CLIENT_CTL_TABLE_PRINTER_H_
#define SHMHUB_CLIENT_CTL_TABLE_PRINTER_H_

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace shmhub::ctl {

class TablePrinter {
 public:
  enum class Align { kLeft, kRight };
  struct Column {
    std::string header;
    Align align = Align::kLeft;
  };

  explicit TablePrinter(std::vector<Column> columns);

  // Cells beyond the column count are dropped, missing ones are empty.
  void AddRow(std::vector<std::string> cells);
  size_t row_count() const { return rows_.size(); }

  // The header line and one line per row, each ending in '\n', without
  // trailing spaces.
  std::string Render() const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

// Key/value lines for one object ("max guests   64"): keys padded to the
// longest, each line ending in '\n'.
std::string RenderKeyValues(const std::vector<std::pair<std::string, std::string>>& pairs);

}  // namespace shmhub::ctl

#endif  // SHMHUB_CLIENT_CTL_TABLE_PRINTER_H_
