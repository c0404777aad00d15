// Writing the files a run must not lose: whole files replaced atomically and log lines appended
// whole. A write that fails (no space, the file size limit, the folder removed or replaced, a
// path that is a directory) throws an Error naming the file and the cause (strerror), leaves the
// previous file as it was and no temporary file behind; a process killed at any moment leaves
// either the previous file or the new one, and never a torn line that a reader takes for whole.
// Covered by tests/test_file_io.cpp.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace u2pl {

// Writes the parts, in order, to path + ".tmp", flushes them to the disk (fsync) and renames the
// file into place. `kind` names the write for the fault hook below ("checkpoint"; null: none).
// A path that is a link, device or pipe is refused (it would be replaced by a plain file).
void write_file_atomic(const std::string& path, const std::vector<std::pair<const void*, size_t>>& parts,
                       const char* kind = nullptr);
void write_file_atomic(const std::string& path, const std::string& text, const char* kind = nullptr);

// Lines appended to a file, each with one write; a failed write is cut off again (the file keeps
// its whole lines) and throws. The file is opened for appending, or emptied first with `truncate`.
class LineFile {
 public:
  LineFile() = default;
  LineFile(const std::string& path, bool truncate, const char* kind = nullptr);
  ~LineFile();
  LineFile(const LineFile&) = delete;
  LineFile& operator=(const LineFile&) = delete;
  // `line` without its newline, which this adds. Refuses a file removed since it was opened (its
  // lines would be lost without an error).
  void append(const std::string& line);

 private:
  std::string path_;
  const char* kind_ = nullptr;
  int fd_ = -1;
};

// An exclusive lock on a folder while the object lives (flock of DIR/.lock, released when the
// process ends however it ends): a second process asking for it is refused, naming the folder.
class FolderLock {
 public:
  explicit FolderLock(const std::string& dir);
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

 private:
  int fd_ = -1;
};

// Test hook: with the environment variable U2PL_FAULT=KIND:N (read once), the N-th (1-based)
// write of that kind ("checkpoint", "log") stops halfway and the process kills itself (SIGKILL).
// The kill harness (tests/kill_resume.sh) lands inside writes that way, which a kill from outside
// rarely does. Without the variable nothing happens.

// The free bytes of the file system that holds `dir` (-1 when unknown).
int64_t free_bytes(const std::string& dir);

}  // namespace u2pl
