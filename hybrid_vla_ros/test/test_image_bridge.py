"""numpy <-> sensor_msgs/Image converter (hybrid_vla_ros.image_bridge)."""
import sys

import numpy as np
import pytest

pytest.importorskip('sensor_msgs.msg')

from hybrid_vla_ros import image_bridge  # noqa: E402
from hybrid_vla_ros.image_bridge import CvBridge, CvBridgeError  # noqa: E402

ENCODINGS = {
    # encoding: (dtype, channels)
    'mono8': (np.uint8, 1),
    'mono16': (np.uint16, 1),
    'rgb8': (np.uint8, 3),
    'bgr8': (np.uint8, 3),
    'rgba8': (np.uint8, 4),
    'bgra8': (np.uint8, 4),
    'rgb16': (np.uint16, 3),
    'bgra16': (np.uint16, 4),
    '32FC1': (np.float32, 1),
    '64FC1': (np.float64, 1),
    '16SC1': (np.int16, 1),
    '8UC3': (np.uint8, 3),
}


def _image(dtype, channels, height=5, width=7, seed=0):
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    if np.issubdtype(dtype, np.floating):
        return rng.normal(size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def _pad_rows(msg, pad):
    """Re-pack ``msg`` with ``pad`` garbage bytes after every row."""
    raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    padding = np.full((msg.height, pad), 0xAB, np.uint8)
    msg.data = np.concatenate([raw, padding], axis=1).tobytes()
    msg.step += pad
    return msg


@pytest.fixture
def bridge():
    return CvBridge()


@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
def test_round_trip_every_encoding(bridge, encoding):
    dtype, channels = ENCODINGS[encoding]
    image = _image(dtype, channels)
    msg = bridge.cv2_to_imgmsg(image, encoding=encoding)
    assert msg.encoding == encoding
    assert (msg.height, msg.width) == image.shape[:2]
    assert msg.step == image.shape[1] * channels * np.dtype(dtype).itemsize
    assert len(msg.data) == msg.step * msg.height
    assert msg.is_bigendian == (sys.byteorder == 'big')
    out = bridge.imgmsg_to_cv2(msg)
    assert out.dtype == np.dtype(dtype) and out.shape == image.shape
    np.testing.assert_array_equal(out, image)
    assert out.flags.writeable and out.flags.c_contiguous


def test_passthrough_encoding_names_cv_type(bridge):
    assert bridge.cv2_to_imgmsg(_image(np.uint8, 3)).encoding == '8UC3'
    assert bridge.cv2_to_imgmsg(_image(np.float32, 1)).encoding == '32FC1'
    assert bridge.cv2_to_imgmsg(_image(np.uint16, 1)[..., None]).encoding == '16UC1'


def test_header_is_kept(bridge):
    from std_msgs.msg import Header
    header = Header(frame_id='camera')
    header.stamp.sec = 12
    msg = bridge.cv2_to_imgmsg(_image(np.uint8, 3), 'rgb8', header=header)
    assert msg.header == header


@pytest.mark.parametrize('encoding,pad', [('rgb8', 1), ('mono16', 3), ('32FC1', 4),
                                          ('bgra8', 12), ('mono8', 7)])
def test_step_row_padding_is_honoured(bridge, encoding, pad):
    dtype, channels = ENCODINGS[encoding]
    image = _image(dtype, channels, height=4, width=3)
    msg = _pad_rows(bridge.cv2_to_imgmsg(image, encoding), pad)
    np.testing.assert_array_equal(bridge.imgmsg_to_cv2(msg), image)


@pytest.mark.parametrize('encoding', ['mono16', '32FC1', 'rgb16', '64FC1', '16SC1'])
def test_big_endian_message_is_byte_swapped(bridge, encoding):
    dtype, channels = ENCODINGS[encoding]
    image = _image(dtype, channels)
    foreign = image.astype(image.dtype.newbyteorder('>' if sys.byteorder == 'little' else '<'))
    msg = bridge.cv2_to_imgmsg(foreign, encoding)
    assert bool(msg.is_bigendian) == (sys.byteorder == 'little')
    assert msg.data.tobytes() == foreign.tobytes()  # wire bytes are in the foreign order
    out = bridge.imgmsg_to_cv2(msg)
    assert out.dtype == np.dtype(dtype)  # host byte order
    np.testing.assert_array_equal(out, image)


def test_big_endian_with_padding_built_by_hand(bridge):
    values = np.array([[1, 258, 65535], [4096, 0, 12345]], dtype='>u2')
    from sensor_msgs.msg import Image
    rows = [values[r].tobytes() + b'\x00\x00' for r in range(2)]
    msg = Image(height=2, width=3, encoding='mono16', is_bigendian=1, step=8,
                data=b''.join(rows))
    np.testing.assert_array_equal(bridge.imgmsg_to_cv2(msg), values.astype(np.uint16))


def test_colour_conversions(bridge):
    rgb = _image(np.uint8, 3)
    msg = bridge.cv2_to_imgmsg(rgb, 'rgb8')
    bgr = bridge.imgmsg_to_cv2(msg, 'bgr8')
    np.testing.assert_array_equal(bgr, rgb[..., ::-1])
    rgba = bridge.imgmsg_to_cv2(msg, 'rgba8')
    np.testing.assert_array_equal(rgba[..., :3], rgb)
    assert (rgba[..., 3] == 255).all()
    bgra = bridge.imgmsg_to_cv2(msg, 'bgra8')
    np.testing.assert_array_equal(bgra[..., :3], rgb[..., ::-1])
    back = bridge.imgmsg_to_cv2(bridge.cv2_to_imgmsg(rgba, 'rgba8'), 'rgb8')
    np.testing.assert_array_equal(back, rgb)
    # alpha survives a channel swap
    rgba[..., 3] = 7
    swapped = bridge.imgmsg_to_cv2(bridge.cv2_to_imgmsg(rgba, 'rgba8'), 'bgra8')
    np.testing.assert_array_equal(swapped, rgba[..., [2, 1, 0, 3]])


def test_mono_conversions_follow_opencv(bridge):
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
    gray = bridge.imgmsg_to_cv2(bridge.cv2_to_imgmsg(rgb, 'rgb8'), 'mono8')
    # OpenCV RGB2GRAY fixed point: (4899 R + 9617 G + 1868 B + 8192) >> 14
    np.testing.assert_array_equal(gray, [[76, 150, 29, 18]])
    gray_from_bgr = bridge.imgmsg_to_cv2(bridge.cv2_to_imgmsg(rgb[..., ::-1].copy(), 'bgr8'),
                                         'mono8')
    np.testing.assert_array_equal(gray_from_bgr, gray)
    mono = np.array([[0, 128, 255]], np.uint8)
    rgb_out = bridge.imgmsg_to_cv2(bridge.cv2_to_imgmsg(mono, 'mono8'), 'rgb8')
    np.testing.assert_array_equal(rgb_out, np.repeat(mono[..., None], 3, axis=-1))


def test_depth_conversions_scale_8_and_16_bit(bridge):
    mono16 = np.array([[0, 257, 65535, 32768]], np.uint16)
    mono8 = bridge.imgmsg_to_cv2(bridge.cv2_to_imgmsg(mono16, 'mono16'), 'mono8')
    np.testing.assert_array_equal(mono8, [[0, 1, 255, 128]])
    up = bridge.imgmsg_to_cv2(bridge.cv2_to_imgmsg(mono8, 'mono8'), 'mono16')
    np.testing.assert_array_equal(up, [[0, 257, 65535, 32896]])
    rgb16 = bridge.imgmsg_to_cv2(bridge.cv2_to_imgmsg(mono16, 'mono16'), 'rgb8')
    assert rgb16.dtype == np.uint8 and rgb16.shape == (1, 4, 3)
    as_float = bridge.imgmsg_to_cv2(bridge.cv2_to_imgmsg(mono16, 'mono16'), '32FC1')
    np.testing.assert_array_equal(as_float, mono16.astype(np.float32))


def test_module_level_functions():
    image = _image(np.uint8, 3)
    msg = image_bridge.cv2_to_imgmsg(image, 'bgr8')
    np.testing.assert_array_equal(image_bridge.imgmsg_to_cv2(msg), image)
    np.testing.assert_array_equal(image_bridge.imgmsg_to_cv2(msg, 'rgb8'), image[..., ::-1])
    assert image_bridge.encoding_to_dtype_with_channels('rgba16') == ('uint16', 4)


def test_unknown_encoding_is_a_value_error(bridge):
    msg = bridge.cv2_to_imgmsg(_image(np.uint8, 3), 'rgb8')
    msg.encoding = 'yuv_fancy'
    with pytest.raises(ValueError, match=r'yuv_fancy'):
        bridge.imgmsg_to_cv2(msg)
    with pytest.raises(ValueError, match=r'yuv_fancy'):
        bridge.cv2_to_imgmsg(_image(np.uint8, 3), 'yuv_fancy')
    good = bridge.cv2_to_imgmsg(_image(np.uint8, 3), 'rgb8')
    with pytest.raises(ValueError, match=r'yuv_fancy'):
        bridge.imgmsg_to_cv2(good, 'yuv_fancy')


def test_wrong_buffer_size_is_a_value_error(bridge):
    msg = bridge.cv2_to_imgmsg(_image(np.uint8, 3, height=4, width=5), 'rgb8')
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(ValueError, match=r'rgb8.*expected .*60 bytes, got 59'):
        bridge.imgmsg_to_cv2(msg)
    msg = bridge.cv2_to_imgmsg(_image(np.uint16, 1, height=4, width=5), 'mono16')
    msg.step = 8  # smaller than 5 * 2 bytes
    with pytest.raises(ValueError, match=r'step 8 .*mono16'):
        bridge.imgmsg_to_cv2(msg)


def test_bad_arrays_and_impossible_conversions(bridge):
    with pytest.raises(ValueError, match='incompatible type 8UC3'):
        bridge.cv2_to_imgmsg(_image(np.uint8, 3), 'mono8')
    with pytest.raises(ValueError, match='incompatible type 32FC1'):
        bridge.cv2_to_imgmsg(_image(np.float32, 1), 'mono16')
    with pytest.raises(ValueError, match='numpy array'):
        bridge.cv2_to_imgmsg([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match='shape'):
        bridge.cv2_to_imgmsg(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ValueError, match='dtype'):
        bridge.cv2_to_imgmsg(np.zeros((2, 2), np.uint64))
    depth = bridge.cv2_to_imgmsg(_image(np.float32, 1), '32FC1')
    with pytest.raises(ValueError, match='not a color format'):
        bridge.imgmsg_to_cv2(depth, 'rgb8')
    with pytest.raises(ValueError, match='same number of channel'):
        bridge.imgmsg_to_cv2(depth, '32FC3')
    assert issubclass(CvBridgeError, TypeError)  # what the real cv_bridge raises


def test_matches_real_cv_bridge_when_installed(bridge):
    cv_bridge = pytest.importorskip('cv_bridge')
    real = cv_bridge.CvBridge()
    conversions = [('rgb8', 'bgr8'), ('rgb8', 'mono8'), ('bgra8', 'rgb8'), ('mono8', 'rgba8'),
                   ('mono16', 'mono8'), ('mono8', 'mono16'), ('32FC1', 'passthrough'),
                   ('rgb16', 'bgr8')]
    for src, dst in conversions:
        dtype, channels = ENCODINGS.get(src, (np.uint16, 3))
        image = _image(dtype, channels, seed=3)
        ours_msg = bridge.cv2_to_imgmsg(image, src)
        real_msg = real.cv2_to_imgmsg(image, src)
        assert (ours_msg.step, ours_msg.encoding) == (real_msg.step, real_msg.encoding)
        assert bytes(ours_msg.data) == bytes(real_msg.data)
        np.testing.assert_array_equal(bridge.imgmsg_to_cv2(real_msg, dst),
                                      real.imgmsg_to_cv2(real_msg, dst), err_msg=f'{src}->{dst}')
