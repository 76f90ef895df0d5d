"""Encoder options that make media files depend on their input only.

By default libx264 picks its thread count from the machine's cores, and the count changes the
bitstream (and the options string x264 writes into it); FFmpeg's muxers and encoders write their
version. With these options an encode gives the same bytes on any machine with the same PyAV
wheel: one x264 thread (and one lookahead thread), FFmpeg's ``bitexact`` flags on the codecs and
the container (no version strings, no creation time), and no metadata copied from an input.

    container = av.open(path, "w", format="mp4", options=CONTAINER)
    video = container.add_stream("libx264", rate=fps, options=x264(crf=23, preset="veryfast"))
    audio = container.add_stream("aac", rate=sr, options=AAC)
"""

from __future__ import annotations

CONTAINER: dict[str, str] = {"fflags": "+bitexact"}
AAC: dict[str, str] = {"flags": "+bitexact"}


def x264(crf: int | float, preset: str) -> dict[str, str]:
    """libx264 options: rate control as given, one thread, bit-exact flags."""
    return {
        "preset": preset,
        "crf": str(crf),
        "threads": "1",
        "flags": "+bitexact",
        "x264-params": "threads=1:lookahead-threads=1",
    }
