"""A zip written front to back while it is sent, optionally encrypted with WinZip AES-256.

Members are stored (a video is already compressed). Each member's CRC comes after its data
in a data descriptor, so nothing is built in memory or on disk first; ZIP64 fields are used
only where sizes or offsets need them, so plain zips open everywhere (Windows Explorer too).

With a password every member is encrypted as WinZip's AE-2 describes (APPNOTE 4.4.3 method
99, extra field 0x9901): PBKDF2-HMAC-SHA1 (1000 rounds) of the password and a random 16-byte
salt gives an AES-256 key, an HMAC-SHA1 key and a 2-byte password check; the data is AES in
counter mode with a 128-bit little-endian counter from 1, followed by the first 10 bytes of
the HMAC-SHA1 of the ciphertext; the CRC field is 0. 7-Zip and WinZip open it.

`EncryptedZipMembers` reads such a zip back for the server's own verification.
"""

import hashlib
import hmac
import os
import struct
import time
import zipfile
import zlib
from collections.abc import Iterable, Iterator

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from exports.verify import Members, PackageError

_LOCAL = 0x04034B50
_CENTRAL = 0x02014B50
_DESCRIPTOR = 0x08074B50
_END = 0x06054B50
_END64 = 0x06064B50
_LOCATOR64 = 0x07064B50
_LIMIT = 0xFFFFFFFF
_FLAG_ENCRYPTED, _FLAG_DESCRIPTOR, _FLAG_UTF8 = 0x1, 0x8, 0x800
_AES_METHOD = 99
_SALT = 16
_AES_EXTRA = struct.pack("<HHH2sBH", 0x9901, 7, 2, b"AE", 3, 0)  # AE-2, AES-256, stored


def _dos_time(moment: float) -> tuple[int, int]:
    t = time.localtime(max(moment, 315532800))  # zip dates start in 1980
    return (t.tm_hour << 11 | t.tm_min << 5 | t.tm_sec // 2,
            (t.tm_year - 1980) << 9 | t.tm_mon << 5 | t.tm_mday)


def derive_keys(password: str, salt: bytes) -> tuple[bytes, bytes, bytes]:
    """(AES key, HMAC key, 2-byte password check) for one member."""
    material = hashlib.pbkdf2_hmac("sha1", password.encode("utf-8"), salt, 1000, 66)
    return material[:32], material[32:64], material[64:]


class CounterCipher:
    """AES-256 in WinZip's counter mode (little-endian 128-bit counter starting at 1)."""

    def __init__(self, key: bytes):
        self.ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        self.counter = 1
        self.pending = b""  # keystream left over from the last call's final partial block

    def apply(self, data: bytes) -> bytes:
        used = min(len(self.pending), len(data))
        head = bytes(a ^ b for a, b in zip(data[:used], self.pending[:used], strict=True))
        self.pending = self.pending[used:]
        data = data[used:]
        if not data:
            return head
        blocks = -(-len(data) // 16)
        counters = np.zeros((blocks, 2), dtype="<u8")
        counters[:, 0] = np.arange(self.counter, self.counter + blocks, dtype=np.uint64)
        self.counter += blocks
        stream = self.ecb.update(counters.tobytes())
        self.pending = stream[len(data):]
        body = np.frombuffer(data, np.uint8) ^ np.frombuffer(stream[: len(data)], np.uint8)
        return head + body.tobytes()


class ZipStream:
    """Yields a zip's bytes member by member: `for chunk in zs.member(...)`, then `zs.close()`."""

    def __init__(self, password: str | None = None):
        self.password = password or None
        self.offset = 0
        self.entries = []

    def _out(self, data: bytes) -> bytes:
        self.offset += len(data)
        return data

    def member(self, name: str, size: int, chunks: Iterable[bytes], mtime: float | None = None
               ) -> Iterator[bytes]:
        """A member of `size` plain bytes; `chunks` yields them."""
        encoded = name.encode("utf-8")
        header_offset = self.offset
        stored = size + (_SALT + 2 + 10 if self.password else 0)
        zip64 = stored >= _LIMIT
        flags = _FLAG_DESCRIPTOR | _FLAG_UTF8 | (_FLAG_ENCRYPTED if self.password else 0)
        method = _AES_METHOD if self.password else 0
        dos_time, dos_date = _dos_time(mtime if mtime is not None else time.time())
        extra = _AES_EXTRA if self.password else b""
        if zip64:  # sizes in the descriptor, as 8 bytes; the local header says so
            extra += struct.pack("<HHQQ", 1, 16, 0, 0)
        yield self._out(struct.pack(
            "<IHHHHHIIIHH", _LOCAL, 45 if zip64 else 20, flags, method, dos_time, dos_date, 0,
            _LIMIT if zip64 else 0, _LIMIT if zip64 else 0, len(encoded), len(extra),
        ) + encoded + extra)
        crc, written = 0, 0
        if self.password:
            salt = os.urandom(_SALT)
            aes_key, mac_key, check = derive_keys(self.password, salt)
            cipher, mac = CounterCipher(aes_key), hmac.new(mac_key, digestmod="sha1")
            yield self._out(salt + check)
        for chunk in chunks:
            written += len(chunk)
            if self.password:
                chunk = cipher.apply(chunk)
                mac.update(chunk)
            else:
                crc = zlib.crc32(chunk, crc)
            yield self._out(chunk)
        if written != size:
            raise OSError(f"{name} changed while it was being sent ({written} of {size} bytes)")
        if self.password:
            yield self._out(mac.digest()[:10])
        sizes = struct.pack("<QQ" if zip64 else "<II", stored, size)
        yield self._out(struct.pack("<II", _DESCRIPTOR, crc) + sizes)
        self.entries.append((encoded, flags, method, dos_time, dos_date, crc, stored, size,
                             header_offset))

    def close(self) -> Iterator[bytes]:
        """The central directory and its end records."""
        start = self.offset
        for encoded, flags, method, dos_time, dos_date, crc, stored, size, at in self.entries:
            big = [v for v in (size, stored, at) if v >= _LIMIT]
            extra = _AES_EXTRA if method == _AES_METHOD else b""
            if big:
                extra += struct.pack("<HH", 1, 8 * len(big)) + b"".join(
                    struct.pack("<Q", v) for v in big)
            yield self._out(struct.pack(
                "<IHHHHHHIIIHHHHHII", _CENTRAL, 0x0314, 45 if big else 20, flags, method,
                dos_time, dos_date, crc, min(stored, _LIMIT), min(size, _LIMIT), len(encoded),
                len(extra), 0, 0, 0, 0o100644 << 16, min(at, _LIMIT),
            ) + encoded + extra)
        length, count = self.offset - start, len(self.entries)
        if start >= _LIMIT or count >= 0xFFFF:
            end64 = self.offset
            yield self._out(struct.pack("<IQHHIIQQQQ", _END64, 44, 45, 45, 0, 0, count, count,
                                        length, start))
            yield self._out(struct.pack("<IIQI", _LOCATOR64, 0, end64, 1))
        yield self._out(struct.pack("<IHHHHIIH", _END, 0, 0, min(count, 0xFFFF),
                                    min(count, 0xFFFF), min(length, _LIMIT), min(start, _LIMIT), 0))


# -- reading an encrypted package back (the server's verification) ----------------------------


class WrongPassword(PackageError):
    pass


class EncryptedZipMembers(Members):
    """A WinZip-AES zip's members, decrypted with `password` while they are read."""

    def __init__(self, source, password: str):
        self.source = source
        self.password = password
        try:
            self.zip = zipfile.ZipFile(source)
        except (zipfile.BadZipFile, EOFError, ValueError) as error:
            raise PackageError(f"not a complete zip file: it is damaged or cut short ({error})") \
                from None
        self.infos = {i.filename: i for i in self.zip.infolist() if not i.is_dir()}
        self.encrypted = any(i.flag_bits & _FLAG_ENCRYPTED for i in self.infos.values())
        if self.encrypted:
            first = next(i for i in self.infos.values() if i.flag_bits & _FLAG_ENCRYPTED)
            self._open_encrypted(first).close()  # a wrong password fails here, by name

    def names(self):
        return list(self.infos)

    def open(self, name):
        info = self.infos.get(name)
        if info is None:
            return None
        if not info.flag_bits & _FLAG_ENCRYPTED:
            return self.zip.open(info)
        return self._open_encrypted(info)

    def _open_encrypted(self, info):
        if info.compress_type != _AES_METHOD:
            raise PackageError(f"{info.filename} uses an encryption this server cannot read "
                               "(only WinZip AES)")
        handle = self.zip.fp
        handle.seek(info.header_offset)
        header = handle.read(30)
        if len(header) < 30 or struct.unpack("<I", header[:4])[0] != _LOCAL:
            raise PackageError(f"the package is damaged at {info.filename}")
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        salt_check = handle.read(_SALT + 2)
        aes_key, mac_key, check = derive_keys(self.password, salt_check[:_SALT])
        if not hmac.compare_digest(check, salt_check[_SALT:]):
            raise WrongPassword("the password is wrong for this package")
        return _DecryptingReader(handle, info.compress_size - _SALT - 2 - 10, aes_key, mac_key,
                                 info.filename)


class _DecryptingReader:
    """A file-like reader of one AES member; checks its authentication code at the end."""

    def __init__(self, handle, length, aes_key, mac_key, name):
        self.handle, self.left, self.name = handle, length, name
        self.position = handle.tell()
        self.cipher, self.mac = CounterCipher(aes_key), hmac.new(mac_key, digestmod="sha1")

    def read(self, size=-1):
        if self.left <= 0:
            return b""
        want = self.left if size is None or size < 0 else min(size, self.left)
        self.handle.seek(self.position)
        data = self.handle.read(want)
        if len(data) < want:
            raise PackageError(f"{self.name} is cut short inside the package")
        self.position += len(data)
        self.left -= len(data)
        self.mac.update(data)
        plain = self.cipher.apply(data)
        if self.left == 0:
            code = self.handle.read(10)
            if not hmac.compare_digest(code, self.mac.digest()[:10]):
                raise PackageError(f"{self.name} was altered inside the encrypted package "
                                   "(its authentication code does not match)")
        return plain

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
