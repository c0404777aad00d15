// Atomic file writes, whole-line appends and the kill hook (engine/file_io.h).
#include "engine/file_io.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>

#include "engine/check.h"

namespace u2pl {
namespace {

std::string cause(int err) { return std::strerror(err); }

// The folder of a path ("." for a bare name).
std::string folder_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

// U2PL_FAULT=KIND:N: true for the N-th write of KIND.
bool fault_due(const char* kind) {
  if (!kind) return false;
  static const std::pair<std::string, long> spec = [] {
    const char* v = std::getenv("U2PL_FAULT");
    if (!v) return std::pair<std::string, long>{"", 0};
    const std::string s(v);
    const size_t colon = s.rfind(':');
    U2PL_CHECK(colon != std::string::npos && colon + 1 < s.size(),
               "U2PL_FAULT=" << s << ": expected KIND:N (for example checkpoint:2)");
    char* end = nullptr;
    const long n = std::strtol(s.c_str() + colon + 1, &end, 10);
    U2PL_CHECK(*end == '\0' && n >= 1, "U2PL_FAULT=" << s << ": N must be a positive whole number");
    return std::pair<std::string, long>{s.substr(0, colon), n};
  }();
  if (spec.first != kind) return false;
  static std::atomic<long> count{0};
  return ++count == spec.second;
}

// Writes all n bytes, retrying short writes; false with errno set on failure.
bool write_all(int fd, const char* p, size_t n) {
  for (size_t done = 0; done < n;) {
    const ssize_t k = ::write(fd, p + done, n - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      if (k == 0) errno = EIO;
      return false;
    }
    done += size_t(k);
  }
  return true;
}

// The fault hook's end: this process dies where it stands.
[[noreturn]] void die_here() {
  ::kill(::getpid(), SIGKILL);
  for (;;) ::pause();
}

}  // namespace

void write_file_atomic(const std::string& path, const std::vector<std::pair<const void*, size_t>>& parts,
                       const char* kind) {
  // Only a regular file is replaced: a link or a device (/dev/stdout) would be swapped for a file.
  struct stat st {};
  U2PL_CHECK(::lstat(path.c_str(), &st) != 0 || S_ISREG(st.st_mode) || S_ISDIR(st.st_mode),
             path << ": not a regular file (a link, device or pipe); give a plain file's path");
  const bool fault = fault_due(kind);
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int open_err = errno;
  U2PL_CHECK(fd >= 0, tmp << ": cannot create the temporary file for " << path << ": " << cause(open_err));
  size_t total = 0;
  for (const auto& part : parts) total += part.second;
  size_t done = 0;
  int err = 0;
  for (const auto& [data, n] : parts) {
    const bool halfway = fault && done + n >= total / 2;
    if (!write_all(fd, static_cast<const char*>(data), halfway ? total / 2 - done : n)) {
      err = errno;
      break;
    }
    if (halfway) die_here();
    done += n;
  }
  if (!err && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && !err) err = errno;
  if (err) {
    ::unlink(tmp.c_str());
    U2PL_FAIL(path << ": cannot write: " << cause(err) << " (the previous file, if any, is unchanged)");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    ::unlink(tmp.c_str());
    U2PL_FAIL(path << ": cannot put the new file in place: " << cause(err)
                   << " (the previous file, if any, is unchanged)");
  }
  // The rename itself on the disk; a folder that cannot be synced (some file systems) is no error.
  const int dir = ::open(folder_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

void write_file_atomic(const std::string& path, const std::string& text, const char* kind) {
  write_file_atomic(path, {{text.data(), text.size()}}, kind);
}

LineFile::LineFile(const std::string& path, bool truncate, const char* kind) : path_(path), kind_(kind) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0644);
  const int err = errno;
  U2PL_CHECK(fd_ >= 0, path << ": cannot open for appending: " << cause(err));
}

LineFile::~LineFile() {
  if (fd_ >= 0) ::close(fd_);
}

void LineFile::append(const std::string& line) {
  U2PL_CHECK(fd_ >= 0, "LineFile: append to a file that is not open");
  struct stat st {};
  const int stat_err = ::fstat(fd_, &st) == 0 ? 0 : errno;
  U2PL_CHECK(stat_err == 0, path_ << ": cannot stat: " << cause(stat_err));
  U2PL_CHECK(st.st_nlink > 0, path_ << ": the file was removed while this run wrote it (was the run directory "
                                    << "removed?); its lines would be lost");
  const std::string text = line + "\n";
  if (fault_due(kind_)) {
    write_all(fd_, text.data(), text.size() / 2);
    die_here();
  }
  if (!write_all(fd_, text.data(), text.size())) {
    const int err = errno;
    const int cut_err = ::ftruncate(fd_, st.st_size) == 0 ? 0 : errno;
    if (cut_err != 0)
      U2PL_FAIL(path_ << ": cannot append a line: " << cause(err) << "; cutting off what was written of it "
                      << "failed too: " << cause(cut_err));
    U2PL_FAIL(path_ << ": cannot append a line: " << cause(err) << " (the file keeps its whole lines)");
  }
}

FolderLock::FolderLock(const std::string& dir) {
  const std::string path = dir + "/.lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  const int open_err = errno;
  U2PL_CHECK(fd_ >= 0, path << ": cannot open the folder's lock: " << cause(open_err));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    U2PL_CHECK(err != EWOULDBLOCK, dir << ": in use by another process (it holds " << path << "); wait for it to "
                                       << "end, or choose another folder");
    U2PL_FAIL(path << ": cannot lock: " << cause(err));
  }
}

FolderLock::~FolderLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the lock
}

int64_t free_bytes(const std::string& dir) {
  struct statvfs s {};
  if (::statvfs(dir.c_str(), &s) != 0) return -1;
  return int64_t(s.f_bavail) * int64_t(s.f_frsize);
}

}  // namespace u2pl
