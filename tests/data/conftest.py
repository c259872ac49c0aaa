"""Set-up for the data tests: two logical CPUs and a folder of real image files."""

import pytest
import tensorflow as tf
from PIL import Image

from tests.data.image_writers import solid_image, write_bytes, write_image, write_truncated_jpeg


def _split_cpu_in_two():
    """Two logical CPUs for the MirroredStrategy test, unless already configured.

    This must run before TensorFlow initialises its devices; the top-level conftest may
    have split the CPU already, and if devices exist the call raises RuntimeError.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    if tf.config.get_logical_device_configuration(cpu) is not None:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    except RuntimeError:
        pass  # devices already initialised; tests that need 2 CPUs skip themselves


_split_cpu_in_two()


@pytest.fixture
def mixed_folder(tmp_path):
    """Labeled folder (no train/test) with every supported format and three bad files.

    cat/: a.jpg (RGB), b.PNG (RGBA), c.bmp (grayscale), d.gif (2 frames), e.JPEG (grayscale)
    dog/: f.png, g.jpg, and the unreadable empty.jpg, trunc.jpg, text.jpg; plus notes.txt and
    a hidden .h.jpg that are not listed at all.
    """
    root = tmp_path / "mixed"
    cat, dog = str(root / "cat"), str(root / "dog")
    write_image(f"{cat}/a.jpg", solid_image(10), quality=95)
    write_image(f"{cat}/b.PNG", solid_image(20), mode="RGBA")
    write_image(f"{cat}/c.bmp", solid_image(30), mode="L")
    first, second = Image.fromarray(solid_image(40)), Image.fromarray(solid_image(250))
    first.save(f"{cat}/d.gif", save_all=True, append_images=[second])
    write_image(f"{cat}/e.JPEG", solid_image(50), mode="L", quality=95)
    write_image(f"{dog}/f.png", solid_image(60))
    write_image(f"{dog}/g.jpg", solid_image(70), quality=95)
    write_bytes(f"{dog}/empty.jpg", b"")
    write_truncated_jpeg(f"{dog}/trunc.jpg")
    write_bytes(f"{dog}/text.jpg", b"this is not an image\n" * 10)
    write_bytes(f"{dog}/notes.txt", b"ignored")
    write_image(f"{dog}/.h.jpg", solid_image(90))
    return str(root)
