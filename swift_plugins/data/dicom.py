"""DICOM files (`.dcm`), decoded with pydicom into what a reading radiologist's viewer shows.

Order of operations, as DICOM defines it (PS3.3 C.11): the stored values go through the modality
LUT (Rescale Slope / Intercept, or a Modality LUT Sequence: e.g. CT values -> Hounsfield units),
then the file's own VOI transform to 8 bits (a VOI LUT Sequence, else the first Window Center /
Width with its VOI LUT Function); a file with neither is windowed at its 0.1/99.9 percentiles like
any image deeper than 8 bits. MONOCHROME1 (0 = white) is inverted after that, palette colour is
expanded through its LUTs, YBR is converted to RGB by pydicom. Refused, with the reason: a
multi-frame file (a series or cine loop in one file has no single image), a file without pixel
data (structured reports, RT plans), and pixel data in a transfer syntax that no installed pydicom
plugin decodes (named, with the packages that add it).
"""
from __future__ import annotations

import io
import os
from typing import Union

import numpy as np

from ..errors import ImageDecodeError
from .images import pixel_limit_error, window_to_uint8

Source = Union[bytes, str, os.PathLike]
DICM_MAGIC_OFFSET = 128
DICOM_SUFFIXES = ('.dcm', '.dicom')
DECODER_HINT = ('install a pydicom decoder plugin (e.g. `pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg` '
                'or `pip install python-gdcm`) or convert the file to an uncompressed transfer syntax')


def is_dicom(head: bytes, name: str = '') -> bool:
    """A DICOM Part 10 file ('DICM' after the 128-byte preamble), or a file named `.dcm`."""
    return head[DICM_MAGIC_OFFSET:DICM_MAGIC_OFFSET + 4] == b'DICM' or name.lower().endswith(DICOM_SUFFIXES)


def _read(source: Source, where: str, header_only: bool):
    import pydicom
    from pydicom.errors import InvalidDicomError

    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else os.fspath(source)
    try:
        try:
            return pydicom.dcmread(fp, stop_before_pixels=header_only)
        except InvalidDicomError:
            # No preamble: some writers omit it; `force` reads the data set that follows.
            if isinstance(fp, io.BytesIO):
                fp.seek(0)
            return pydicom.dcmread(fp, stop_before_pixels=header_only, force=True)
    except FileNotFoundError:
        raise ImageDecodeError(f'{where}: image file not found: {source}') from None
    except Exception as e:
        raise ImageDecodeError(f'{where}: not a readable DICOM file: {type(e).__name__}: {e}') from None


def _transfer_syntax(ds) -> str:
    uid = getattr(getattr(ds, 'file_meta', None), 'TransferSyntaxUID', None)
    return f'{uid.name} ({uid})' if uid else 'no transfer syntax in the file meta'


def _check(ds, where: str, max_pixels: int) -> tuple[int, int]:
    """(width, height) of a single-frame image within the pixel limit, or a refusal."""
    if 'Rows' not in ds or 'Columns' not in ds:
        kind = ds.get('Modality') or getattr(ds.get('SOPClassUID'), 'name', None) or 'unknown'
        raise ImageDecodeError(f'{where}: DICOM file holds no image (modality {kind}); point the row at an image file')
    w, h = int(ds.Columns), int(ds.Rows)
    try:
        frames = int(ds.get('NumberOfFrames') or 1)
    except (TypeError, ValueError):
        raise ImageDecodeError(f'{where}: DICOM Number of Frames {ds.get("NumberOfFrames")!r} is not a number') from None
    if frames > 1:
        raise ImageDecodeError(f'{where}: multi-frame DICOM ({frames} frames of {w}x{h}) has no single image; '
                               f'export the frame you mean as its own file')
    if w * h > max_pixels:
        raise pixel_limit_error(where, w, h, max_pixels)
    return w, h


def dicom_size(source: Source, where: str, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the header, with the same refusals `decode_dicom` makes before decoding."""
    return _check(_read(source, where, header_only=True), where, max_pixels)


def _pixels(ds, where: str) -> np.ndarray:
    from pydicom.pixels import get_decoder

    uid = getattr(getattr(ds, 'file_meta', None), 'TransferSyntaxUID', None)
    if uid is not None and uid.is_compressed:
        try:
            decoder = get_decoder(uid)
        except NotImplementedError:
            raise ImageDecodeError(f'{where}: DICOM pixel data in transfer syntax {_transfer_syntax(ds)} is not '
                                   f'supported by pydicom; convert the file to an uncompressed transfer syntax') from None
        if not decoder.is_available:
            raise ImageDecodeError(f'{where}: no installed decoder for DICOM transfer syntax {_transfer_syntax(ds)}; '
                                   f'{DECODER_HINT}')
    try:
        return ds.pixel_array
    except Exception as e:
        first = str(e).strip().splitlines()
        raise ImageDecodeError(f'{where}: cannot decode DICOM pixel data ({_transfer_syntax(ds)}): '
                               f'{type(e).__name__}: {" ".join(s.strip() for s in first)}') from None


def _window(x: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """The VOI window of PS3.3 C.11.2.1.2 onto [0, 255]."""
    function = (function or 'LINEAR').upper()
    if function == 'SIGMOID':
        y = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    elif function == 'LINEAR_EXACT':
        y = np.clip((x - center) / width + 0.5, 0, 1)
    else:
        if width < 1:
            raise ValueError(f'Window Width {width} is below 1')
        y = np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0, 1) if width > 1 else (x > center - 0.5).astype(float)
    return np.rint(y * 255).astype(np.uint8)


def _first(value) -> float:
    """The first of a multi-valued Window Center / Width (alternative views; the first is the default)."""
    try:
        return float(value)
    except TypeError:
        return float(value[0])


def _monochrome(ds, arr: np.ndarray, info: dict) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi

    values = apply_modality_lut(arr, ds).astype(np.float64)
    if ds.get('VOILUTSequence'):
        out = apply_voi(values, ds, 0).astype(np.float64)
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        out8 = np.rint(np.clip(out / (2 ** bits - 1), 0, 1) * 255).astype(np.uint8)
        info['voi'] = 'VOI LUT Sequence (first)'
    elif 'WindowCenter' in ds and 'WindowWidth' in ds:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get('VOILUTFunction') or 'LINEAR')
        out8 = _window(values, center, width, function)
        info['voi'] = {'center': center, 'width': width, 'function': function.upper()}
    else:
        out8 = window_to_uint8(values)
        info['voi'] = 'none in the file: 0.1/99.9 percentile window'
    if ds.PhotometricInterpretation == 'MONOCHROME1':
        out8 = 255 - out8
        info['inverted'] = True
    return out8


def decode_dicom(source: Source, where: str, max_pixels: int) -> tuple[np.ndarray, dict]:
    """One DICOM image -> (planes, height, width) uint8 (1 plane gray, 3 RGB) and what was done."""
    ds = _read(source, where, header_only=False)
    _check(ds, where, max_pixels)
    if 'PixelData' not in ds and 'FloatPixelData' not in ds and 'DoubleFloatPixelData' not in ds:
        raise ImageDecodeError(f'{where}: DICOM file has image attributes but no pixel data')
    arr = _pixels(ds, where)
    photometric = str(ds.get('PhotometricInterpretation', '')).strip().upper()
    info = {'format': 'DICOM', 'transfer_syntax': _transfer_syntax(ds), 'photometric': photometric,
            'modality': str(ds.get('Modality') or '')}
    try:
        if photometric in ('MONOCHROME1', 'MONOCHROME2'):
            if arr.ndim != 2:
                raise ImageDecodeError(f'{where}: {photometric} DICOM pixel data has shape {arr.shape}, not rows x columns')
            return _monochrome(ds, arr, info)[None], info
        if photometric == 'PALETTE COLOR':
            from pydicom.pixels import apply_color_lut
            rgb = apply_color_lut(arr, ds)
            bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
            rgb8 = np.rint(rgb.astype(np.float64) * (255 / (2 ** bits - 1))).clip(0, 255).astype(np.uint8)
            return np.moveaxis(rgb8, -1, 0), info
        if photometric in ('RGB', 'YBR_FULL', 'YBR_FULL_422', 'YBR_ICT', 'YBR_RCT') and arr.ndim == 3 and arr.shape[-1] == 3:
            planes = np.moveaxis(arr, -1, 0)   # pydicom returns YBR data converted to RGB
            if planes.dtype != np.uint8:
                planes = np.stack([window_to_uint8(p) for p in planes])
                info['window'] = 'per channel, 0.1/99.9 percentiles'
            return planes, info
    except ImageDecodeError:
        raise
    except Exception as e:
        raise ImageDecodeError(f'{where}: cannot apply the DICOM {photometric} transforms: {type(e).__name__}: {e}') from None
    raise ImageDecodeError(f'{where}: unsupported DICOM Photometric Interpretation {photometric!r} '
                           f'(pixel data shape {arr.shape}); expected MONOCHROME1/2, RGB, YBR or PALETTE COLOR')
