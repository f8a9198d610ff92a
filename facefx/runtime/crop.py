"""THE crop geometry: detector keypoints -> similarity transform onto a fixed template -> S x S crop.

Training data (train/prepare.py) and live frames (realtime/) are cropped by this module alone, so the
students only ever see faces framed the way they learned them. Its inverse pastes a model's output
back into the frame with a feathered mask. Numpy + OpenCV only (the realtime path never imports torch).

Coordinates: keypoints in image pixels (x, y); the template in crop units ([0, 1] of the crop side).
BlazeFace keypoint order: right eye, left eye, nose tip, mouth centre, right ear, left ear
("right" is the subject's right, on the image's left).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import cv2
import numpy as np

# Eyes, nose tip, mouth centre on the crop, in crop units (nose and mouth at BlazeFace's mean offsets of
# 0.45 and 0.93 interocular distances below the eyes). Interocular distance 0.28 of the crop side leaves
# 1.5 interocular distances above the eyes for hair and ~1 below the mouth for the chin, and keeps
# UTKFace's tight 200 px chips covering ~80% of the crop.
DEFAULT_TEMPLATE = ((0.36, 0.42), (0.64, 0.42), (0.50, 0.546), (0.50, 0.68))
KEYPOINTS_USED = 4  # the ears (keypoints 4, 5) are unreliable on turned heads and are not used


@dataclass(frozen=True)
class CropSpec:
    """Everything needed to reproduce a crop; written into every manifest and exported model."""

    size: int = 256
    template: tuple[tuple[float, float], ...] = DEFAULT_TEMPLATE
    border: str = "replicate"  # how pixels outside the frame are filled (faces at the frame edge); replicate, since
    # reflection mirrors eyes and mouths into the margin
    feather: float = 0.22  # paste-back mask ramp width, in half-crop units
    version: int = 1
    name: str = field(default="facefx-v1")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["template"] = [list(p) for p in self.template]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CropSpec:
        d = dict(d)
        d["template"] = tuple(tuple(p) for p in d["template"])
        return cls(**d)

    def with_size(self, size: int) -> CropSpec:
        return replace(self, size=size)


_BORDERS = {"reflect101": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT}


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src -> dst (Umeyama 1991).

    src, dst: (K, 2). Returns a 2x3 float64 matrix M with dst ~= M @ [x, y, 1].
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / s.var(0).sum()
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def face_transform(keypoints: np.ndarray, spec: CropSpec) -> np.ndarray:
    """2x3 matrix mapping image pixels -> crop pixels for one face's keypoints ((6, 2) or (4, 2), pixels)."""
    kp = np.asarray(keypoints, np.float64)[:KEYPOINTS_USED]
    template = np.asarray(spec.template, np.float64) * spec.size
    return similarity_transform(kp, template)


def invert(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(m, np.float64))


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (K, 2) points."""
    pts = np.asarray(points, np.float64)
    return pts @ m[:, :2].T + m[:, 2]


ZOOM_CENTER = (0.5, 0.58)  # crop units: between the eyes and the mouth, a little low, so the chin stays in


def zoomed(spec: CropSpec, zoom: float) -> CropSpec:
    """The same geometry with the face `zoom` times larger in the crop (template scaled about ZOOM_CENTER).

    For sources that are already tight face chips (UTKFace): at zoom 1 about half of each crop is replicated
    border, at 1.4 the face gets ~2x the pixels. zoom 1.4 leaves ~0.9 eye distances above the eyes and ~0.7
    below the mouth. The name records the zoom, so face sets of different zooms are never mixed by mistake.
    """
    if zoom <= 0:
        raise ValueError(f"zoom must be positive, got {zoom}")
    if zoom == 1:
        return spec
    c = np.asarray(ZOOM_CENTER)
    t = c + (np.asarray(spec.template, np.float64) - c) * zoom
    return replace(spec, template=tuple((round(float(x), 4), round(float(y), 4)) for x, y in t),
                   name=f"{spec.name}-zoom{zoom:g}")


def recrop_theta(src: CropSpec, dst: CropSpec) -> np.ndarray | None:
    """2x3 matrix for torch's affine_grid that resamples a crop made with `src` into `dst`'s geometry (normalized
    [-1, 1] coordinates, output -> input); None when the templates are the same. Outside the src crop is its
    border (grid_sample padding "border"): what a crop of a tight chip has there anyway."""
    if tuple(map(tuple, src.template)) == tuple(map(tuple, dst.template)):
        return None
    # dst units -> src units (similarity), then units u -> normalized n = 2u - 1 on both sides.
    m = similarity_transform(np.asarray(dst.template, np.float64), np.asarray(src.template, np.float64))
    a, b = m[:, :2], m[:, 2]
    return np.concatenate([a, (a @ np.ones(2) + 2 * b - 1)[:, None]], axis=1)


def crop(image: np.ndarray, m: np.ndarray, spec: CropSpec) -> np.ndarray:
    """Warp a uint8 HWC image into the S x S crop; outside the frame is filled per spec.border."""
    return cv2.warpAffine(image, m, (spec.size, spec.size), flags=cv2.INTER_LINEAR,
                          borderMode=_BORDERS[spec.border])


_MASKS: dict[tuple, np.ndarray] = {}

# The paste mask's head ellipse, in interocular distances (iod) of the template: the hair line 1.5 iod above the
# eyes, the chin 0.6 iod below the mouth, 1.45 iod to each side of the eyes' midpoint.
HEAD_ABOVE_EYES_IOD = 1.5
HEAD_BELOW_MOUTH_IOD = 0.6
HEAD_HALF_WIDTH_IOD = 1.45
# ... cut by a rounded square (a superellipse of this exponent) reaching 0 just inside the crop's own edge.
EDGE_EXPONENT = 4
EDGE_RADIUS = 0.98
# The inner face (brows to chin, cheek to cheek): an ellipse about the template's centre, in iod.
INNER_HALF_WIDTH_IOD = 0.95
INNER_HALF_HEIGHT_IOD = 1.15
INNER_OUTER = 1.3  # inner_face_mask reaches 0 at this many times the inner ellipse


def _pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    # Masks are sampled at pixel centres: u = (i + 0.5) / size, in crop units.
    u = (np.arange(size, dtype=np.float64) + 0.5) / size
    return np.meshgrid(u, u)


def paste_mask_geometry(spec: CropSpec) -> dict:
    """The paste mask's parameters in crop units ([0, 1] of the side), as feather_mask uses them (and as the
    model contract states them, so a port rebuilds the mask without this code)."""
    t = np.asarray(spec.template, np.float64)
    eyes, mouth = t[:2].mean(0), t[3]
    iod = float(np.linalg.norm(t[1] - t[0]))
    top, chin = eyes[1] - HEAD_ABOVE_EYES_IOD * iod, mouth[1] + HEAD_BELOW_MOUTH_IOD * iod
    ax, ay = HEAD_HALF_WIDTH_IOD * iod, (chin - top) / 2
    return {"head_centre": [float(eyes[0]), float((top + chin) / 2)], "head_axes": [float(ax), float(ay)],
            "head_ramp": float(spec.feather / 2 / min(ax, ay)),  # feather is in half-crop units
            "edge_exponent": EDGE_EXPONENT, "edge_radius": EDGE_RADIUS, "edge_ramp": float(spec.feather)}


def feather_mask(spec: CropSpec) -> np.ndarray:
    """(S, S) float32 in [0, 1]: 1 over the head (face and hair), smoothly falling to 0 around it.

    The mask follows the head, an ellipse placed from the template's eyes and mouth, not the square crop:
    an effect's changes to the background beside the head are dropped, and any colour change it makes
    fades out along the head's outline instead of showing as a square patch around it.
    """
    key = (spec.size, spec.feather, spec.template)
    if key not in _MASKS:
        g = paste_mask_geometry(spec)
        (cx, cy), (ax, ay), ramp = g["head_centre"], g["head_axes"], g["head_ramp"]
        uu, vv = _pixel_centres(spec.size)
        rho = np.sqrt(((uu - cx) / ax) ** 2 + ((vv - cy) / ay) ** 2)  # 1 on the head's outline
        head = np.clip((1 + ramp / 2 - rho) / ramp, 0.0, 1.0)
        # ... and never beyond the crop's own edge (a rounded square reaching 0 at the border).
        n = g["edge_exponent"]
        r = (np.abs(2 * uu - 1) ** n + np.abs(2 * vv - 1) ** n) ** (1 / n)
        edge = np.clip((g["edge_radius"] - r) / g["edge_ramp"], 0.0, 1.0)
        a = head * edge
        _MASKS[key] = (a * a * (3 - 2 * a)).astype(np.float32)  # smoothstep: no visible ramp edge
    return _MASKS[key]


def inner_face_geometry(spec: CropSpec, outer: float = INNER_OUTER) -> dict:
    """The inner-face ellipse in crop units, and where inner_face_mask reaches 0 (in ellipse radii)."""
    t = np.asarray(spec.template, np.float64)
    eye_d = float(np.linalg.norm(t[1] - t[0]))
    return {"centre": [float(t[:, 0].mean()), float((t[0, 1] + t[3, 1]) / 2)],
            "axes": [INNER_HALF_WIDTH_IOD * eye_d, INNER_HALF_HEIGHT_IOD * eye_d], "outer": float(outer)}


def inner_face_radius(spec: CropSpec) -> np.ndarray:
    """(S, S) float64: distance from the centre of the inner face (brows to chin, cheek to cheek) in units of an
    ellipse placed from the template's eyes and mouth; 1 on the ellipse. Hair, background and neck lie beyond."""
    g = inner_face_geometry(spec)
    (cx, cy), (ax, ay) = g["centre"], g["axes"]
    uu, vv = _pixel_centres(spec.size)
    return np.sqrt(((uu - cx) / ax) ** 2 + ((vv - cy) / ay) ** 2)


def inner_face_mask(spec: CropSpec, outer: float = INNER_OUTER) -> np.ndarray:
    """(S, S) float32 in [0, 1]: 1 over the inner face, smoothly 0 at `outer` times its ellipse (jaw line and
    hairline included). Confines an effect's change to the face, so hair and background keep the input's pixels."""
    a = np.clip((outer - inner_face_radius(spec)) / (outer - 1.0), 0.0, 1.0)
    return (a * a * (3 - 2 * a)).astype(np.float32)


def paste(frame: np.ndarray, face: np.ndarray, m: np.ndarray, spec: CropSpec) -> np.ndarray:
    """Paste an S x S crop (e.g. a model's output) back into the frame in place, feathered; returns frame.

    Only the bounding box of the crop's footprint is touched, so the rest of the frame is bit-exact.
    """
    h, w = frame.shape[:2]
    s = spec.size
    corners = apply(invert(m), np.array([[0, 0], [s, 0], [0, s], [s, s]], np.float64))
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return frame
    # Shift the transform so the inverse warp renders only the box [x0, x1) x [y0, y1).
    m_box = m.copy()
    m_box[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
    size = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    back = cv2.warpAffine(face, m_box, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(feather_mask(spec), m_box, size, flags=flags, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0)
    # back * alpha + frame * (1 - alpha) in one SIMD pass (1.5x faster than numpy floats); exact where alpha is 0.
    frame[y0:y1, x0:x1] = cv2.blendLinear(back, frame[y0:y1, x0:x1], alpha, 1.0 - alpha)
    return frame
