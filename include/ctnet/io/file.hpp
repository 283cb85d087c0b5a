// ctnet/io/file.hpp — whole-file reads and crash-safe writes.
//
// read_file: the bytes of a file, or ctnet::error naming it and the reason.
// open_file: a file kept open for reads at offsets (pread), so a large file is read piece by
// piece into its destination instead of whole into memory first.
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
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
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

class open_file {
public:
    explicit open_file(std::string path) : path_{std::move(path)}, fd_{::open(path_.c_str(), O_RDONLY | O_CLOEXEC)} {
        if (fd_ < 0) throw error("ctnet: cannot open '" + path_ + "': " + std::strerror(errno));
        struct stat st {};
        const int e = ::fstat(fd_, &st) != 0 ? errno : 0;
        if (e != 0 || !S_ISREG(st.st_mode)) {
            ::close(fd_);
            throw error("ctnet: '" + path_ + "' is not a regular file" + (e != 0 ? std::string{": "} + std::strerror(e) : ""));
        }
        size_ = static_cast<std::uint64_t>(st.st_size);
    }
    open_file(const open_file&) = delete;
    open_file& operator=(const open_file&) = delete;
    ~open_file() { ::close(fd_); }

    [[nodiscard]] const std::string& path() const { return path_; }
    [[nodiscard]] std::uint64_t size() const { return size_; }  // when it was opened

    // Exactly n bytes from offset into dst; a file that shrank since it was opened, or a read
    // error, throws naming the file and the offset.
    void read_at(std::uint64_t offset, void* dst, std::size_t n) const {
        auto* out = static_cast<std::uint8_t*>(dst);
        while (n > 0) {
            const ssize_t got = ::pread(fd_, out, n, static_cast<off_t>(offset));
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0)
                throw error("ctnet: cannot read '" + path_ + "' at byte " + std::to_string(offset) + ": " +
                            (got == 0 ? std::string{"the file ended early (was it changed while being read?)"}
                                      : std::string{std::strerror(errno)}));
            out += got;
            offset += static_cast<std::uint64_t>(got);
            n -= static_cast<std::size_t>(got);
        }
    }

private:
    std::string path_;
    int fd_;
    std::uint64_t size_ = 0;
};

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
