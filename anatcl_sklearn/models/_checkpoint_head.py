"""A checkpoint's first bytes: what a file that cannot be a torch checkpoint is, told by name.

Nothing here unpickles: a zip header, a pickle header, a tar header, a plain pickle without
torch's magic number, an HTML page, a Git LFS pointer are told apart from raw bytes.
"""

# torch.save writes a zip archive; files from torch < 1.6 (or saved with
# _use_new_zipfile_serialization=False) are a pickle, protocol 2 or more, whose
# first byte is the PROTO opcode; torch < 0.4 wrote tar archives.
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"
_HEAD_BYTES = 512


def _check_looks_like_checkpoint(path):
    """Refuse, from its first bytes, a file that cannot be a torch checkpoint."""
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    if head.startswith((_ZIP_MAGIC, _PICKLE_PROTO)) or head[257:262] == b"ustar":
        return
    raise ValueError(
        f"'{path}' is not a torch checkpoint: it {_describe_head(head)}. A "
        "checkpoint written by torch.save starts with a zip header (PK) or a "
        "pickle header; download or copy the file again, or pass the right one."
    )


# A legacy (non-zip) torch.save file opens with this number pickled as a LONG1.
_TORCH_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def _plain_pickle_protocol(path):
    """The protocol of a pickle that torch.save did not write (no magic number), else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(32)
    except OSError:
        return None
    if len(head) < 2 or head[:1] != _PICKLE_PROTO or _TORCH_MAGIC in head:
        return None
    return head[1]


def _plain_pickle_message(path, protocol):
    return (
        f"'{path}' is not a torch checkpoint: it is a plain Python pickle (protocol "
        f"{protocol}), not a file written by torch.save, and was not unpickled (nothing in it "
        "was run). Pass the checkpoint torch.save wrote (a .pth / .pt file), or a saved-model "
        "folder."
    )


def _describe_head(head):
    if not head:
        return "is empty"
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        stripped.startswith(b"<") and b"<html" in stripped
    ):
        return (
            "looks like an HTML page (a login or error page saved in place of "
            "the weights?)"
        )
    text = _as_text(head)
    if text is not None and text.startswith("version https://git-lfs"):
        return "is a Git LFS pointer, not the file it stands for (run `git lfs pull`)"
    if text is not None:
        first = text.strip().splitlines()[0] if text.strip() else text
        shown = first[:40] + ("..." if len(first) > 40 else "")
        return f"is a text file starting with {shown!r}"
    return f"starts with bytes {head[:8].hex(' ')}"


def _as_text(head):
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the end of the read is still text.
        if exc.start < len(head) - 3:
            return None
        text = head[: exc.start].decode("utf-8")
    if all(c.isprintable() or c in "\t\n\r\f\v" for c in text):
        return text
    return None
