// ctnet/io/file.hpp — whole-file reads and crash-safe writes.
//
// read_file: the bytes of a file, or ctnet::error naming it and the reason.
// write_file_atomic: writes to "PATH.tmp-PID", flushes it to disk, then renames it over PATH,
// so PATH always holds either the old or the complete new contents, never a torn file.
// Requires: a POSIX file system (open, fsync, rename).
// Guarantees: failures throw ctnet::error naming the path and the system's reason.

#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "../core/error.hpp"

namespace ctnet::io {

inline std::vector<std::uint8_t> read_file(const std::string& path, std::size_t max_bytes = std::size_t{1} << 34) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw error("ctnet: cannot open '" + path + "': " + std::strerror(errno));
    std::vector<std::uint8_t> bytes;
    std::uint8_t chunk[1 << 16];
    for (std::size_t got; (got = std::fread(chunk, 1, sizeof chunk, f)) > 0;) {
        if (bytes.size() + got > max_bytes) {
            std::fclose(f);
            throw error("ctnet: '" + path + "' is larger than the limit of " + std::to_string(max_bytes) + " bytes");
        }
        bytes.insert(bytes.end(), chunk, chunk + got);
    }
    const bool failed = std::ferror(f) != 0;
    std::fclose(f);
    if (failed) throw error("ctnet: error while reading '" + path + "'");
    return bytes;
}

inline void write_file_atomic(const std::string& path, const std::vector<std::uint8_t>& bytes) {
    const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw error("ctnet: cannot create '" + tmp + "': " + std::strerror(errno));
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            const int e = errno;
            ::close(fd);
            ::unlink(tmp.c_str());
            throw error("ctnet: cannot write '" + tmp + "': " + std::strerror(e));
        }
        done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        throw error("ctnet: cannot flush '" + tmp + "': " + std::strerror(e));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        throw error("ctnet: cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(e));
    }
}

}  // namespace ctnet::io
