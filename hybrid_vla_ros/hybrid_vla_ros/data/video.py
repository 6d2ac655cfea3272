"""Camera frames <-> mp4 with PyAV (bundled FFmpeg; no system FFmpeg needed).

LeRobot v3 keeps every episode of a chunk file in one mp4 and addresses an episode by its
``from_timestamp``/``to_timestamp`` inside it. :func:`encode_frames` writes one episode with
LeRobot's default encoder settings (AV1 via libsvtav1, yuv420p, a keyframe every 2 frames,
crf 30, preset 12); :func:`concatenate` appends episodes by copying their packets (no
re-encoding), shifting their time stamps so the presentation times run on without a gap.
"""
from fractions import Fraction
import os
from typing import Dict, List, Sequence

import numpy as np

CODEC = 'libsvtav1'
PIX_FMT = 'yuv420p'
GOP = 2
CRF = 30
PRESET = 12
MIN_SIZE = 32  # px, width and height


def encode_frames(path: str, frames: np.ndarray, fps: int) -> None:
    """Write (N, H, W, 3) uint8 frames to ``path`` at ``fps`` (LeRobot's default settings)."""
    import av

    os.environ.setdefault('SVT_LOG', '1')  # SVT-AV1 prints its banner otherwise (1 = errors)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(f'camera frames must be (N, H, W, 3) uint8 with N > 0, got '
                         f'{frames.shape} {frames.dtype}')
    h, w = frames.shape[1:3]
    if h < MIN_SIZE or w < MIN_SIZE:  # SVT-AV1 dies with SIGFPE on narrower frames
        raise ValueError(f'camera frames must be at least {MIN_SIZE}x{MIN_SIZE} pixels for '
                         f'{CODEC}, got {w}x{h}')
    if h % 2 or w % 2:
        raise ValueError(f'camera frames must have even height and width for {PIX_FMT}, got '
                         f'{w}x{h}')
    with av.open(path, mode='w') as out:
        stream = out.add_stream(CODEC, rate=int(fps),
                                options={'g': str(GOP), 'crf': str(CRF), 'preset': str(PRESET)})
        stream.width, stream.height, stream.pix_fmt = w, h, PIX_FMT
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format='rgb24')
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def concatenate(parts: Sequence[str], frame_counts: Sequence[int], fps: int, dest: str) -> None:
    """Join mp4 files of the same stream parameters into ``dest``, back to back.

    Part ``k`` starts at ``sum(frame_counts[:k]) / fps`` seconds; packets are copied as they are.
    """
    import av

    if len(parts) != len(frame_counts) or not parts:
        raise ValueError('concatenate: one frame count per part, at least one part')
    with av.open(parts[0]) as first:
        template = first.streams.video[0].codec_context
        with av.open(dest, mode='w') as out:
            # The file's decoder (libdav1d) cannot be a template: an encoder stream with the
            # same parameters carries the copied packets (it never encodes a frame).
            stream = out.add_stream(CODEC, rate=int(fps), options={
                'g': str(GOP), 'crf': str(CRF), 'preset': str(PRESET)})
            stream.width, stream.height = template.width, template.height
            stream.pix_fmt = template.pix_fmt
            start = 0
            for part, count in zip(parts, frame_counts):
                with av.open(part) as src:
                    s = src.streams.video[0]
                    offset = int(round(Fraction(start, int(fps)) / s.time_base))
                    for packet in src.demux(s):
                        if packet.dts is None:  # the demuxer's flush packet
                            continue
                        packet.pts += offset
                        packet.dts += offset
                        packet.stream = stream
                        out.mux(packet)
                start += int(count)


def video_info(path: str) -> Dict[str, object]:
    """The ``info`` block LeRobot stores for a video feature, read from the file."""
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        cc = s.codec_context
        return {'video.height': cc.height, 'video.width': cc.width,
                'video.codec': cc.codec.canonical_name, 'video.pix_fmt': cc.pix_fmt,
                'video.is_depth_map': False, 'video.fps': int(round(float(s.average_rate))),
                'video.channels': 3, 'has_audio': bool(c.streams.audio)}


def decode_range(path: str, from_timestamp: float, n_frames: int, fps: int) -> np.ndarray:
    """(n_frames, H, W, 3) uint8: the frames at ``from_timestamp + k / fps``, k < n_frames."""
    import av

    out: List[np.ndarray] = []
    if not os.path.exists(path):
        raise FileNotFoundError(f'video file {path} is missing')
    half = 0.5 / fps
    with av.open(path) as c:
        s = c.streams.video[0]
        c.seek(int(from_timestamp / s.time_base), stream=s, backward=True, any_frame=False)
        for frame in c.decode(s):
            t = float(frame.pts * s.time_base)
            if t < from_timestamp - half:
                continue
            out.append(frame.to_ndarray(format='rgb24'))
            if len(out) == n_frames:
                break
    if len(out) != n_frames:
        raise ValueError(f'{path}: expected {n_frames} frames from {from_timestamp:.3f} s, '
                         f'decoded {len(out)}')
    return np.stack(out)
