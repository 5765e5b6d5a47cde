"""Writing image sequences (latent walks) as animations: GIF always (Pillow), MP4 when an encoder is installed.

What this module is for: ``lightning-gen sample --walk`` and anyone holding frames (T, C, H, W) in [-1, 1].
What it is not: a video library; MP4 goes through PyAV (``pip install av``) or an ``ffmpeg`` on the PATH, and
neither is required by lightning-gen.

Example:
    >>> import tempfile, torch
    >>> from PIL import Image
    >>> path = save_gif(torch.rand(4, 3, 16, 16) * 2 - 1, tempfile.mkdtemp() + "/walk.gif", fps=8)
    >>> Image.open(path).n_frames
    4
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from PIL import Image
from torch import Tensor

from lightning_gen._images import to_uint8

MP4_ENCODER_HINT = "Install PyAV (`pip install av`) or put an `ffmpeg` executable on the PATH, or write a GIF instead."


def _frames_hwc(frames: Tensor) -> list:
    if frames.ndim != 4 or frames.shape[1] not in (1, 3):
        raise ValueError(f"frames must have shape (T, C, H, W) with C in (1, 3), got {tuple(frames.shape)}.")
    array = to_uint8(frames.detach().cpu()).permute(0, 2, 3, 1).numpy()
    return [frame[..., 0] if frame.shape[-1] == 1 else frame for frame in array]


def save_gif(frames: Tensor, path: str | os.PathLike, fps: float = 12.0, loop: bool = True) -> Path:
    """Write frames (T, C, H, W; float in [-1, 1] or uint8) as an animated GIF and return its path.

    Args:
        frames: the images, in order.
        path: the file to write (parent folders are created).
        fps: frames per second (GIF stores delays in 10 ms units, so rates above 50 are not honoured by viewers).
        loop: repeat forever; otherwise play once.
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(frame) for frame in _frames_hwc(frames)]
    extra = {"loop": 0} if loop else {}
    # disposal=1 keeps each full frame; optimize=False keeps the palette per frame (small images, faithful colours).
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), disposal=1, optimize=False, **extra)
    return path


def mp4_encoder() -> str | None:
    """The MP4 encoder available here: ``"av"`` (PyAV), ``"ffmpeg"`` (an executable on the PATH) or None."""
    try:
        import av  # noqa: F401
    except ImportError:
        return "ffmpeg" if shutil.which("ffmpeg") else None
    return "av"


def save_mp4(frames: Tensor, path: str | os.PathLike, fps: float = 12.0) -> Path:
    """Write frames as an H.264 MP4 with PyAV or ffmpeg, whichever is installed.

    Raises:
        RuntimeError: no encoder is installed (the message says how to get one).
    """
    encoder = mp4_encoder()
    if encoder is None:
        raise RuntimeError(f"Writing an MP4 needs an encoder, and none is installed. {MP4_ENCODER_HINT}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = [frame if frame.ndim == 3 else frame[..., None].repeat(3, axis=-1) for frame in _frames_hwc(frames)]
    height, width = rgb[0].shape[:2]
    if encoder == "av":  # pragma: no cover - depends on the environment
        import av
        from fractions import Fraction

        with av.open(str(path), mode="w") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
            # H.264's yuv420p needs even sides.
            stream.width, stream.height, stream.pix_fmt = width + width % 2, height + height % 2, "yuv420p"
            for frame in rgb:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(stream.width, stream.height)))
            container.mux(stream.encode())
        return path
    command = [  # pragma: no cover - depends on the environment
        "ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
        "-r", str(fps), "-i", "-", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-pix_fmt", "yuv420p", "-c:v", "libx264",
        str(path),
    ]
    subprocess.run(command, input=b"".join(frame.tobytes() for frame in rgb), check=True)  # pragma: no cover
    return path  # pragma: no cover
