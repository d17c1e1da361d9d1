"""Transcripts read and profiles written for C{emulator learn} and C{diff}."""

from __future__ import annotations

from pathlib import Path

from emulator.capture.files import write_atomically
from emulator.capture.transcript import Transcript, TranscriptError, read_sessions


def transcript_paths(paths: list[str | Path]) -> list[Path]:
    """C{paths} with every folder replaced by its C{*.jsonl} files, sorted;
    a ValueError names a path that is neither."""
    out = []
    for item in map(Path, paths):
        if item.is_dir():
            found = sorted(item.glob("*.jsonl"))
            if not found:
                raise ValueError(f"{item}: no .jsonl transcripts in this folder")
            out += found
        elif item.is_file():
            out.append(item)
        else:
            raise ValueError(f"{item}: no such file or folder")
    return out


def read_transcript(path: Path) -> Transcript:
    """One JSON-lines transcript; a ValueError names the file and what is wrong."""
    try:
        return Transcript.from_jsonl(path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read: {e}") from None
    except TranscriptError as e:
        raise ValueError(f"{path}: not a transcript (JSON lines with a header): {e}") from None


def read_transcripts(path: Path) -> list[Transcript]:
    """Every session of a JSON-lines file: the recorder's and the probe's
    hold one, a server's run file (C{--transcripts}) many."""
    try:
        sessions, _ = read_sessions(path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read: {e}") from None
    except TranscriptError as e:
        raise ValueError(f"{path}: not a transcript (JSON lines with a header): {e}") from None
    if not sessions:
        raise ValueError(f"{path}: no session in it")
    return sessions


def write_transcript(folder: Path, name: str, transcript: Transcript) -> Path:
    """C{folder/name} written atomically (a reader sees all of it or nothing)."""
    (folder / ".tmp").mkdir(parents=True, exist_ok=True)
    return Path(write_atomically(str(folder / ".tmp"), str(folder), name, transcript.jsonl_pieces()))


def write_text(path: Path, text: str) -> Path:
    """C{path} written atomically beside itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
