"""numpy <-> sensor_msgs/Image conversion with cv_bridge's API, without OpenCV.

PyPI's ``cv-bridge`` (1.13.0.post0) is an old ROS 1 port that does not work with NumPy 2 and
current OpenCV (docs/architecture.md, "ROS 2 from pip"), so this module mirrors the parts of
``cv_bridge.CvBridge`` the stack needs::

    bridge = CvBridge()
    msg = bridge.cv2_to_imgmsg(rgb_array, encoding='rgb8', header=header)
    bgr = bridge.imgmsg_to_cv2(msg, desired_encoding='bgr8')

Supported encodings: the colour/mono ones ``mono8 mono16 rgb8 bgr8 rgba8 bgra8 rgb16 bgr16
rgba16 bgra16`` and the generic OpenCV-type ones ``{8U,8S,16U,16S,32S,32F,64F}C{1..4}`` (e.g.
``32FC1`` depth images). Conversions between encodings follow cv_bridge's rules: colour changes
first (``RGB2GRAY`` uses OpenCV's fixed-point weights, an added alpha channel is opaque), then a
depth change (8 <-> 16 bit is rescaled, other depth changes are a saturating cast); a non-colour
encoding can only change depth with the same channel count.

The message's ``step`` (row padding) and ``is_bigendian`` are honoured on input; arrays come
back in host byte order, C-contiguous and writable (a copy, never a view on ``msg.data``).
Errors raise :class:`CvBridgeError`, a subclass of both ``ValueError`` and ``TypeError`` (the
real cv_bridge raises ``TypeError``).

Only ``sensor_msgs.msg`` is imported from ROS, lazily, when a message is built.
"""
import array
import re
import sys

import numpy as np

__all__ = [
    'CvBridge',
    'CvBridgeError',
    'cv2_to_imgmsg',
    'encoding_to_dtype_with_channels',
    'imgmsg_to_cv2',
]


class CvBridgeError(TypeError, ValueError):
    """Raised for unknown encodings, bad buffers and unsupported conversions."""


# encoding -> (numpy dtype, channels, colour layout or None for non-colour)
_COLOR = {
    'mono8': ('u1', 1, 'GRAY'),
    'mono16': ('u2', 1, 'GRAY'),
    'rgb8': ('u1', 3, 'RGB'),
    'bgr8': ('u1', 3, 'BGR'),
    'rgba8': ('u1', 4, 'RGBA'),
    'bgra8': ('u1', 4, 'BGRA'),
    'rgb16': ('u2', 3, 'RGB'),
    'bgr16': ('u2', 3, 'BGR'),
    'rgba16': ('u2', 4, 'RGBA'),
    'bgra16': ('u2', 4, 'BGRA'),
}
_CV_DEPTHS = {'8U': 'u1', '8S': 'i1', '16U': 'u2', '16S': 'i2', '32S': 'i4', '32F': 'f4',
              '64F': 'f8'}
_DTYPE_TO_CV = {np.dtype(v).str[1:]: k for k, v in _CV_DEPTHS.items()}
_GENERIC_RE = re.compile(r'^(8U|8S|16U|16S|32S|32F|64F)(?:C([1-4]))?$')

# RGB -> GRAY fixed-point weights of OpenCV's cvtColor for 8/16-bit (shift 14).
_R2Y, _G2Y, _B2Y, _YSHIFT = 4899, 9617, 1868, 14


def _parse_encoding(encoding):
    """Return (dtype, channels, layout or None) for an encoding name."""
    if not isinstance(encoding, str):
        raise CvBridgeError(f'encoding must be a str, got {type(encoding).__name__}')
    if encoding in _COLOR:
        code, channels, layout = _COLOR[encoding]
        return np.dtype(code), channels, layout
    match = _GENERIC_RE.match(encoding.upper())
    if match:
        return np.dtype(_CV_DEPTHS[match.group(1)]), int(match.group(2) or 1), None
    known = ', '.join(sorted(_COLOR)) + ', {8U,8S,16U,16S,32S,32F,64F}C{1..4}'
    raise CvBridgeError(f'Unrecognized image encoding [{encoding}] (supported: {known})')


def encoding_to_dtype_with_channels(encoding):
    """cv_bridge's helper: ``(numpy dtype name, channels)`` of an encoding."""
    dtype, channels, _ = _parse_encoding(encoding)
    return dtype.name, channels


def _cv_type_name(dtype, channels):
    key = np.dtype(dtype).newbyteorder('=').str[1:]
    if key not in _DTYPE_TO_CV:
        raise CvBridgeError(f'Unsupported array dtype {np.dtype(dtype)} (supported: uint8, '
                            'int8, uint16, int16, int32, float32, float64)')
    return f'{_DTYPE_TO_CV[key]}C{channels}'


def _bit_depth(dtype):
    return np.dtype(dtype).itemsize * 8


def _max_value(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == 'f':
        return 1.0
    return np.iinfo(dtype).max


def _convert_depth(image, dtype, src_dtype):
    """OpenCV convertTo as cv_bridge uses it (8 <-> 16 bit rescaled, saturating cast)."""
    dtype = np.dtype(dtype)
    if image.dtype == dtype:
        return image
    src_bits, dst_bits = _bit_depth(src_dtype), _bit_depth(dtype)
    if src_bits == 8 and dst_bits == 16 and dtype.kind != 'f':
        scaled = image.astype(np.float64) * (65535.0 / 255.0)
    elif src_bits == 16 and dst_bits == 8 and dtype.kind != 'f':
        scaled = image.astype(np.float64) * (255.0 / 65535.0)
    else:
        scaled = image
    if dtype.kind == 'f':
        return scaled.astype(dtype)
    info = np.iinfo(dtype)
    if scaled.dtype.kind == 'f':
        scaled = np.rint(scaled)
    return np.clip(scaled, info.min, info.max).astype(dtype)


def _to_gray(image, layout):
    """RGB(A)/BGR(A) -> single channel, OpenCV's weights and rounding."""
    r_idx, b_idx = (0, 2) if layout.startswith('RGB') else (2, 0)
    r, g, b = image[..., r_idx], image[..., 1], image[..., b_idx]
    if image.dtype.kind == 'f':
        return (0.299 * r + 0.587 * g + 0.114 * b).astype(image.dtype)
    y = (r.astype(np.int64) * _R2Y + g.astype(np.int64) * _G2Y + b.astype(np.int64) * _B2Y
         + (1 << (_YSHIFT - 1))) >> _YSHIFT
    return y.astype(image.dtype)


def _convert_layout(image, src, dst):
    """Colour layout change between GRAY, RGB, BGR, RGBA, BGRA (same depth)."""
    if src == dst:
        return image
    if dst == 'GRAY':
        return _to_gray(image, src)
    if src == 'GRAY':
        rgb, order, alpha = np.repeat(image[..., None], 3, axis=-1), 'RGB', None
    else:
        rgb, order = image[..., :3], src[:3]
        alpha = image[..., 3:4] if len(src) == 4 else None
    if order != dst[:3]:
        rgb = rgb[..., ::-1]
    if len(dst) == 4:
        if alpha is None:  # an added alpha channel is opaque, as in OpenCV
            alpha = np.full(image.shape[:2] + (1,), _max_value(image.dtype), image.dtype)
        rgb = np.concatenate([rgb, alpha], axis=-1)
    return np.ascontiguousarray(rgb)


def _convert(image, src_encoding, dst_encoding):
    """cv_bridge's cvtColor(src -> dst) for an image in host byte order."""
    if dst_encoding == src_encoding:
        return image
    src_dtype, src_ch, src_layout = _parse_encoding(src_encoding)
    dst_dtype, dst_ch, dst_layout = _parse_encoding(dst_encoding)
    if src_layout is None:
        if dst_layout is not None:
            raise CvBridgeError(f'[{src_encoding}] is not a color format. but [{dst_encoding}] '
                                'is. The conversion does not make sense')
        if src_ch != dst_ch:
            raise CvBridgeError(f'[{src_encoding}] and [{dst_encoding}] do not have the same '
                                'number of channel')
        return _convert_depth(image, dst_dtype, src_dtype)
    if dst_layout is None:
        if src_ch != dst_ch:
            raise CvBridgeError(f'[{src_encoding}] is a color format but [{dst_encoding}] is '
                                'not so they must have the same number of channels')
        return _convert_depth(image, dst_dtype, src_dtype)
    out = _convert_layout(image, src_layout, dst_layout)
    return _convert_depth(out, dst_dtype, src_dtype)


def _host_is_big():
    return sys.byteorder == 'big'


class CvBridge:
    """Drop-in for ``cv_bridge.CvBridge`` (raw images only, no compressed images)."""

    def imgmsg_to_cv2(self, img_msg, desired_encoding='passthrough'):
        """sensor_msgs/Image -> numpy array ``(h, w)`` or ``(h, w, channels)``."""
        encoding = img_msg.encoding
        dtype, channels, _ = _parse_encoding(encoding)
        height, width, step = int(img_msg.height), int(img_msg.width), int(img_msg.step)
        row_bytes = width * channels * dtype.itemsize
        if step < row_bytes:
            raise CvBridgeError(
                f'Image step {step} is smaller than a row of {width} x {channels} x '
                f'{dtype.itemsize} bytes = {row_bytes} for encoding [{encoding}]')
        data = img_msg.data
        buf = np.frombuffer(data, dtype=np.uint8) if len(data) else np.zeros(0, np.uint8)
        expected = step * height
        if buf.size != expected:
            raise CvBridgeError(
                f'Image data size mismatch for encoding [{encoding}] {width}x{height}: '
                f'expected step*height = {step}*{height} = {expected} bytes, got {buf.size}')
        rows = buf.reshape(height, step)[:, :row_bytes]
        order = '>' if img_msg.is_bigendian else '<'
        image = np.ascontiguousarray(rows).view(dtype.newbyteorder(order))
        image = image.reshape((height, width) if channels == 1 else (height, width, channels))
        image = image.astype(dtype.newbyteorder('='), copy=True)  # host order, owned copy
        if desired_encoding in ('passthrough', None, ''):
            return image
        return _convert(image, encoding, desired_encoding)

    def cv2_to_imgmsg(self, cvim, encoding='passthrough', header=None):
        """numpy array -> sensor_msgs/Image (``step`` = packed row, no padding)."""
        from sensor_msgs.msg import Image

        if not isinstance(cvim, np.ndarray):
            raise CvBridgeError(f'Your input type is not a numpy array: {type(cvim).__name__}')
        if cvim.ndim == 2:
            channels = 1
        elif cvim.ndim == 3 and 1 <= cvim.shape[2] <= 4:
            channels = cvim.shape[2]
        else:
            raise CvBridgeError(f'Image array must be (h, w) or (h, w, 1..4), got shape '
                                f'{cvim.shape}')
        cv_type = _cv_type_name(cvim.dtype, channels)
        if encoding in ('passthrough', None, ''):
            encoding = cv_type
        else:
            dtype, enc_channels, _ = _parse_encoding(encoding)
            expected_type = _cv_type_name(dtype, enc_channels)
            if expected_type != cv_type:
                raise CvBridgeError(f'encoding specified as {encoding}, but image has '
                                    f'incompatible type {cv_type} (expected {expected_type})')
        img_msg = Image()
        if header is not None:
            img_msg.header = header
        img_msg.height, img_msg.width = int(cvim.shape[0]), int(cvim.shape[1])
        img_msg.encoding = encoding
        order = cvim.dtype.byteorder
        img_msg.is_bigendian = bool(order == '>' or (order == '=' and _host_is_big()))
        raw = np.ascontiguousarray(cvim).tobytes()
        img_msg.data = array.array('B', raw)  # the fast path of the generated setter
        img_msg.step = len(raw) // img_msg.height if img_msg.height else 0
        return img_msg


_DEFAULT_BRIDGE = CvBridge()


def imgmsg_to_cv2(img_msg, desired_encoding='passthrough'):
    """Module-level :meth:`CvBridge.imgmsg_to_cv2`."""
    return _DEFAULT_BRIDGE.imgmsg_to_cv2(img_msg, desired_encoding)


def cv2_to_imgmsg(cvim, encoding='passthrough', header=None):
    """Module-level :meth:`CvBridge.cv2_to_imgmsg`."""
    return _DEFAULT_BRIDGE.cv2_to_imgmsg(cvim, encoding, header)
