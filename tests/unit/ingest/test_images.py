import numpy as np
import pytest

from kgrag.errors import InputError
from kgrag.imaging import load_image


def test_png_roundtrip_and_resize(tmp_path):
    from PIL import Image

    arr = (np.linspace(0, 255, 64 * 32).reshape(32, 64)).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    assert x.shape == (32, 64) and x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    assert load_image(tmp_path / "a.png", size=16).shape == (16, 16)
    Image.fromarray(arr).convert("RGB").save(tmp_path / "b.jpg")
    assert load_image(tmp_path / "b.jpg").shape == (32, 64)


def test_corrupt_and_missing(tmp_path):
    p = tmp_path / "c.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(InputError, match="could not be decoded|not a readable"):
        load_image(p)
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "none.png")
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(InputError):
        load_image(tmp_path / "t.txt")


def _dicom(path, pixels, photometric):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.WindowCenter, ds.WindowWidth = 500, 1000
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_dicom_windowing_and_monochrome1(tmp_path):
    px = np.array([[0, 250], [500, 1000]], np.uint16)
    _dicom(tmp_path / "m2.dcm", px, "MONOCHROME2")
    _dicom(tmp_path / "m1.dcm", px, "MONOCHROME1")
    m2 = load_image(tmp_path / "m2.dcm")
    m1 = load_image(tmp_path / "m1.dcm")
    # window [0, 1000]: 0 -> 0, 250 -> 0.25, 500 -> 0.5, 1000 -> 1
    assert np.allclose(m2, [[0.0, 0.25], [0.5, 1.0]])
    assert np.allclose(m1, 1.0 - m2)  # MONOCHROME1 is inverted
