#ifndef ENGRAM_REPLAY_SERVER_RECORD_IO_H_
#define ENGRAM_REPLAY_SERVER_RECORD_IO_H_

// Little helpers shared by the replay server's on-disk formats (checkpoint.cc, wal.cc):
// little-endian integers, zlib crc32 and errno text.

#include <zlib.h>

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

}  // namespace engram::replay::record_io

#endif  // ENGRAM_REPLAY_SERVER_RECORD_IO_H_
