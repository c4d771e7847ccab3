"""The blob store's directories: made once, durably, at start-up; a shard directory that
vanished is made again (durably) by the delivery that needs it."""

from __future__ import annotations

import shutil
from pathlib import Path

from casella.store.blobs import BlobStore


async def test_shard_directories_exist_from_the_start_and_come_back(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs", inline_max=-1)   # every body in a file
    blobs.prepare()
    names = {p.name for p in (tmp_path / "blobs").iterdir()}
    assert names == {"tmp"} | {f"{i:02x}" for i in range(256)}
    blobs.prepare()     # again: nothing to do, nothing fails

    staged = await blobs.stage(b"Subject: one\r\n\r\nbody\r\n")
    shutil.rmtree(blobs.path_for(staged.digest).parent)
    dirs: set[Path] = set()
    blobs.publish(staged, dirs)
    # publish() runs under the write lock, maybe on the event loop: it leaves every fsync,
    # the root's for the new shard directory too, to the commit phase.
    assert dirs == {blobs.root, blobs.path_for(staged.digest).parent}
    BlobStore.sync_dirs(dirs)
    assert blobs.path_for(staged.digest).read_bytes() == b"Subject: one\r\n\r\nbody\r\n"
    staged.discard()

    early = await blobs.stage(b"Subject: two\r\n\r\nbody\r\n", publish_early=True)
    assert early.early_ino is not None and early.own_link
    assert blobs.path_for(early.digest).exists()
    shutil.rmtree(blobs.path_for(early.digest).parent)
    again = await blobs.stage(b"Subject: two\r\n\r\nbody\r\n", publish_early=True)
    assert again.own_link and blobs.path_for(again.digest).exists()
    early.discard()
    again.discard()
