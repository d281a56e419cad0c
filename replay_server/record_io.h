#ifndef ENGRAM_REPLAY_SERVER_RECORD_IO_H_
#define ENGRAM_REPLAY_SERVER_RECORD_IO_H_

// Little helpers shared by the replay server's on-disk formats (checkpoint.cc, wal.cc):
// little-endian integers, zlib crc32, errno text, full writes and directory fsync.

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>

namespace engram::replay::record_io {

inline void PutU32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}
inline void PutU64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}
inline uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}
inline uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

// zlib crc32 of `n` bytes, continuing `crc` (0 to start).
inline uint32_t Crc(uint32_t crc, const char* data, size_t n) {
  return static_cast<uint32_t>(crc32_z(crc, reinterpret_cast<const Bytef*>(data), n));
}

inline std::string ErrnoText(int err) {
  return std::error_code(err, std::generic_category()).message();
}

// Writes all `n` bytes to `fd` (retrying short writes and EINTR): 0, or the errno.
inline int WriteFully(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return 0;
}

// fsync of a directory, so that the entries created or renamed in it are durable: 0, or
// the errno.
inline int FsyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  const int err = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

}  // namespace engram::replay::record_io

#endif  // ENGRAM_REPLAY_SERVER_RECORD_IO_H_
