"""Local and S3 storage helpers, against a real S3 protocol server on loopback."""

from __future__ import annotations

import pytest

from rbcray import storage
from rbcray.errors import RbcrayError


@pytest.mark.parametrize("remote", [False, True])
def test_write_read_list_remove(tmp_path, s3_server, remote) -> None:
    base = f"s3://{s3_server()}/run" if remote else str(tmp_path / "run")
    storage.check_writable(base)
    storage.write_bytes(storage.join(base, "a.bin"), b"abc")
    storage.write_bytes(storage.join(base, "sub", "b.bin"), b"defg")
    assert storage.read_bytes(storage.join(base, "a.bin")) == b"abc"
    assert storage.listdir(base) == ["a.bin", "sub"]
    assert storage.exists(storage.join(base, "sub", "b.bin"))
    storage.remove(storage.join(base, "a.bin"))
    assert not storage.exists(storage.join(base, "a.bin"))
    fs, path = storage.pyarrow_filesystem(storage.join(base, "sub", "b.bin"))
    assert fs.get_file_info(path).size == 4


def test_unwritable_locations_fail_early(tmp_path, s3_server) -> None:
    with pytest.raises(RbcrayError, match="s3://no-such-bucket-x/out: output location is not writable"):
        storage.check_writable("s3://no-such-bucket-x/out")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RbcrayError, match="not writable"):
        storage.check_writable(str(blocker / "out"))
    with pytest.raises(RbcrayError, match="unsupported storage scheme 'ftp'"):
        storage.filesystem("ftp://host/x")
    with pytest.raises(RbcrayError, match="not found"):
        storage.read_bytes(str(tmp_path / "missing"))
