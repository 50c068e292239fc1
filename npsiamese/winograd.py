"""3x3 convolutions with Winograd's minimal filtering, F(2x2, 3x3) (Lavin & Gray, 2016).

A 3x3 filter on a 4x4 tile of the input gives a 2x2 tile of the output: 36
multiplies done directly. Winograd's algorithm gets the same four numbers with
16 multiplies, by moving both into a "transformed" 4x4 space where the
convolution becomes an element-wise product::

    Y = A^T [ (G g G^T) * (B^T d B) ] A        d: 4x4 input tile, g: 3x3 filter,
                                               Y: 2x2 output tile, * element-wise

    B^T = [[1, 0, -1,  0],    G = [[1,    0,   0],    A^T = [[1, 1,  1,  0],
           [0, 1,  1,  0],         [1/2,  1/2, 1/2],         [0, 1, -1, -1]]
           [0, -1, 1,  0],         [1/2, -1/2, 1/2],
           [0, 1,  0, -1]]         [0,    0,   1]]

Summed over the input channels, the element-wise products become 16
independent matrix multiplies, one per position (a, b) of the 4x4 space::

    M[a, b] = V[a, b] @ U[a, b].T    (tiles, C) @ (C, F) -> (tiles, F)
    U = G g G^T for every (f, c),  V = B^T d B for every (tile, c)

2.25x fewer multiplies than im2col + BLAS, and V holds 16 numbers per tile of
4 output pixels instead of im2col's 9 per pixel. The backward pass runs the
same three steps backwards (each transform's adjoint, the transposed
multiplies)::

    dM = A dY A^T                  (per output tile, dY zero beyond the edge)
    dU[a, b].T = V[a, b].T @ dM[a, b]    dw = G^T dU G
    dV[a, b] = dM[a, b] @ U[a, b]        dx tile += B dV B^T   (tiles overlap: +=)

``npsiamese.conv`` uses this for 3x3, stride-1 convolutions with enough
channels to pay for the transforms; the results equal im2col's up to float
rounding, and the tests compare both with the loop reference.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .threads import parallel_ranges

G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])

# Scratch per chunk of images (V and M), bytes: small enough to stay in a core's L2,
# but at least _MIN_TILES tiles per chunk, so that the multiplies are not too thin
# (measured on the compact net: 17x17 images 3 at a time beat 1 by 10%).
_CHUNK_BYTES = 1 * 2**20
_MIN_TILES = 200


def _chunk_size(C, F, T, itemsize):
    """Images per chunk: V and M within _CHUNK_BYTES, or enough images for _MIN_TILES tiles."""
    return max(1, _CHUNK_BYTES // (16 * (C + F) * T * itemsize), -(-_MIN_TILES // T))


# --------------------------------------------------------------------------- kernels
# Like conv.py's: serial (the wrappers run one call per thread on disjoint
# images, nogil lets them overlap), cache=True to compile once per dtype,
# fastmath=False because the transforms are exact sums and differences.
#
# Layout: channels last. Tile (ti, tj) of image n is row n*T + ti*tW + tj of
# V (16, tiles, C) and M (16, tiles, F) (T = tH*tW tiles per image), and
# position (a, b) of the 4x4 space is plane 4a + b. Each image is first copied
# into a zero-bordered (rows, columns, channels) scratch image, so the
# innermost loops run over the C (or F) channels of one pixel: contiguous and
# long enough for the compiler to vectorise (the rows of tiles are too short).

@njit(nogil=True, cache=True, fastmath=False)
def _input_transform_kernel(x, pad_h, pad_w, tH, tW, V, xp):
    """V[4a+b, tile, c] = (B^T d B)[a, b], d = the 4x4 input tile at (2 ti, 2 tj) of padded x.

    x: (n, C, H, W); V: (16, n*tH*tW, C); xp: (2*tH + 2, 2*tW + 2, C) scratch
    whose border is zero (x[n] is copied to its middle: the border is the padding).
    """
    N, C, H, W = x.shape
    T = tH * tW
    t = np.empty((16, C), dtype=V.dtype)
    for n in range(N):
        for c in range(C):
            for r in range(H):
                for col in range(W):
                    xp[pad_h + r, pad_w + col, c] = x[n, c, r, col]
        for ti in range(tH):
            for tj in range(tW):
                k = n * T + ti * tW + tj
                r0, c0 = 2 * ti, 2 * tj
                for j in range(4):  # t = B^T d: combine the 4 rows of column j
                    d0, d1, d2, d3 = xp[r0, c0 + j], xp[r0 + 1, c0 + j], xp[r0 + 2, c0 + j], xp[r0 + 3, c0 + j]
                    for c in range(C):
                        t[j, c] = d0[c] - d2[c]
                        t[4 + j, c] = d1[c] + d2[c]
                        t[8 + j, c] = d2[c] - d1[c]
                        t[12 + j, c] = d1[c] - d3[c]
                for a in range(4):  # V = t B: combine the 4 columns of row a
                    t0, t1, t2, t3 = t[4 * a], t[4 * a + 1], t[4 * a + 2], t[4 * a + 3]
                    v0, v1, v2, v3 = V[4 * a, k], V[4 * a + 1, k], V[4 * a + 2, k], V[4 * a + 3, k]
                    for c in range(C):
                        v0[c] = t0[c] - t2[c]
                        v1[c] = t1[c] + t2[c]
                        v2[c] = t2[c] - t1[c]
                        v3[c] = t1[c] - t3[c]


@njit(nogil=True, cache=True, fastmath=False)
def _output_transform_kernel(M, b, tH, tW, out, yp):
    """out[n, f, 2ti+u, 2tj+v] = (A^T m A)[u, v] + b[f], m[a, b] = M[4a+b, tile, f]; cut at the edge.

    M: (16, n*tH*tW, F); b: (F,); out: (n, F, H_out, W_out), overwritten;
    yp: (2*tH, 2*tW, F) scratch for one image's uncut output, channels last.
    """
    N, F, H_out, W_out = out.shape
    T = tH * tW
    s = np.empty((8, F), dtype=M.dtype)
    for n in range(N):
        for ti in range(tH):
            for tj in range(tW):
                k = n * T + ti * tW + tj
                for j in range(4):  # s = A^T m: rows u = 0, 1 of column j
                    m0, m1, m2, m3 = M[j, k], M[4 + j, k], M[8 + j, k], M[12 + j, k]
                    for f in range(F):
                        s[j, f] = m0[f] + m1[f] + m2[f]
                        s[4 + j, f] = m1[f] - m2[f] - m3[f]
                for u in range(2):  # Y = s A, plus the bias
                    s0, s1, s2, s3 = s[4 * u], s[4 * u + 1], s[4 * u + 2], s[4 * u + 3]
                    y0, y1 = yp[2 * ti + u, 2 * tj], yp[2 * ti + u, 2 * tj + 1]
                    for f in range(F):
                        y0[f] = s0[f] + s1[f] + s2[f] + b[f]
                        y1[f] = s1[f] - s2[f] - s3[f] + b[f]
        for f in range(F):  # back to (F, H_out, W_out), cutting the last tiles at the edge
            for i in range(H_out):
                for j in range(W_out):
                    out[n, f, i, j] = yp[i, j, f]


@njit(nogil=True, cache=True, fastmath=False)
def _output_transform_adjoint_kernel(dout, tH, tW, dM, yp):
    """dM[4a+b, tile, f] = (A dY A^T)[a, b], dY = the 2x2 tile of dout (zero beyond the edge).

    dout: (n, F, H_out, W_out); dM: (16, n*tH*tW, F), overwritten; yp: (2*tH, 2*tW, F)
    scratch whose cells beyond H_out, W_out are zero.
    """
    N, F, H_out, W_out = dout.shape
    T = tH * tW
    q = np.empty((8, F), dtype=dM.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    yp[i, j, f] = dout[n, f, i, j]
        for ti in range(tH):
            for tj in range(tW):
                k = n * T + ti * tW + tj
                for v in range(2):  # q = A dY: rows a = 0..3 of column v
                    y0, y1 = yp[2 * ti, 2 * tj + v], yp[2 * ti + 1, 2 * tj + v]
                    for f in range(F):
                        q[v, f] = y0[f]
                        q[2 + v, f] = y0[f] + y1[f]
                        q[4 + v, f] = y0[f] - y1[f]
                        q[6 + v, f] = -y1[f]
                for a in range(4):  # dM = q A^T
                    q0, q1 = q[2 * a], q[2 * a + 1]
                    m0, m1, m2, m3 = dM[4 * a, k], dM[4 * a + 1, k], dM[4 * a + 2, k], dM[4 * a + 3, k]
                    for f in range(F):
                        m0[f] = q0[f]
                        m1[f] = q0[f] + q1[f]
                        m2[f] = q0[f] - q1[f]
                        m3[f] = -q1[f]


@njit(nogil=True, cache=True, fastmath=False)
def _input_transform_adjoint_kernel(dV, pad_h, pad_w, tH, tW, dx, dxp):
    """dx = the middle of dxp, where dxp[2ti + i, 2tj + j] += (B dV B^T)[i, j] over all tiles.

    dV: (16, n*tH*tW, C); dx: (n, C, H, W), overwritten; dxp: (2*tH + 2, 2*tW + 2, C) scratch.
    """
    N, C, H, W = dx.shape
    T = tH * tW
    e = np.empty((16, C), dtype=dV.dtype)
    for n in range(N):
        dxp[:] = 0
        for ti in range(tH):
            for tj in range(tW):
                k = n * T + ti * tW + tj
                for b in range(4):  # e = B dV: rows i = 0..3 of column b
                    v0, v1, v2, v3 = dV[b, k], dV[4 + b, k], dV[8 + b, k], dV[12 + b, k]
                    for c in range(C):
                        e[b, c] = v0[c]
                        e[4 + b, c] = v1[c] - v2[c] + v3[c]
                        e[8 + b, c] = v1[c] + v2[c] - v0[c]
                        e[12 + b, c] = -v3[c]
                r0, c0 = 2 * ti, 2 * tj
                for i in range(4):  # e B^T, added into the tile (tiles overlap: +=)
                    e0, e1, e2, e3 = e[4 * i], e[4 * i + 1], e[4 * i + 2], e[4 * i + 3]
                    p0, p1, p2, p3 = dxp[r0 + i, c0], dxp[r0 + i, c0 + 1], dxp[r0 + i, c0 + 2], dxp[r0 + i, c0 + 3]
                    for c in range(C):
                        p0[c] += e0[c]
                        p1[c] += e1[c] - e2[c] + e3[c]
                        p2[c] += e1[c] + e2[c] - e0[c]
                        p3[c] -= e3[c]
        for c in range(C):
            for r in range(H):
                for col in range(W):
                    dx[n, c, r, col] = dxp[pad_h + r, pad_w + col, c]


# --------------------------------------------------------------------------- functions
# (G g G^T)[a, b] = sum over (i, j) of G[a, i] G[b, j] g[i, j]: with g flattened to 9
# numbers, one (16, 9) matrix, the Kronecker product of G with itself.
GG = np.kron(G, G)


def filter_transform(w):
    """U[4a+b, f, c] = (G w[f, c] G^T)[a, b]: (F, C, 3, 3) -> (16, F, C), same dtype."""
    F, C = w.shape[:2]
    return (GG.astype(w.dtype) @ w.reshape(F * C, 9).T).reshape(16, F, C)   # one (16, 9) @ (9, F*C)


def filter_transform_adjoint(dU):
    """dw[f, c] = G^T dU[:, f, c] G, dU as (16, F, C) (rows 4a+b) -> (F, C, 3, 3): the gradient through U."""
    F, C = dU.shape[1:]
    return np.ascontiguousarray((GG.T.astype(dU.dtype) @ dU.reshape(16, F * C)).T).reshape(F, C, 3, 3)


def _tiles(H_out, W_out):
    """(tH, tW): 2x2 output tiles per column and row, the last one possibly cut."""
    return (H_out + 1) // 2, (W_out + 1) // 2


def _buffers(F, C, T, chunk, dtype):
    """Flat scratch for V (16, n*T, C) and M (16, n*T, F), and a view maker for a chunk of n images."""
    V_flat = np.empty(16 * C * T * chunk, dtype=dtype)
    M_flat = np.empty(16 * F * T * chunk, dtype=dtype)

    def views(n):  # contiguous views of the first n images' worth
        return V_flat[:16 * T * n * C].reshape(16, T * n, C), M_flat[:16 * T * n * F].reshape(16, T * n, F)
    return views


def winograd_forward(x, w, b, pad, out):
    """3x3, stride-1 convolution of x (N, C, H, W) into out (N, F, H_out, W_out), H_out = H + 2*pad_h - 2.

    Arguments are validated by ``conv.conv2d_forward``, which calls this.
    """
    N, C, H, W = x.shape
    F = w.shape[0]
    pad_h, pad_w = pad
    tH, tW = _tiles(out.shape[2], out.shape[3])
    T = tH * tW
    U_T = np.ascontiguousarray(filter_transform(w).transpose(0, 2, 1))  # (16, C, F)
    chunk = _chunk_size(C, F, T, x.itemsize)

    def images(lo, hi):  # one thread's share of the batch
        views = _buffers(F, C, T, chunk, x.dtype)
        xp = np.zeros((2 * tH + 2, 2 * tW + 2, C), dtype=x.dtype)  # one padded image, zero border
        yp = np.empty((2 * tH, 2 * tW, F), dtype=x.dtype)          # one output image, uncut
        for start in range(lo, hi, chunk):
            stop = min(start + chunk, hi)
            V, M = views(stop - start)
            _input_transform_kernel(x[start:stop], pad_h, pad_w, tH, tW, V, xp)
            np.matmul(V, U_T, out=M)          # 16 x (tiles, C) @ (C, F) -> (tiles, F)
            _output_transform_kernel(M, b, tH, tW, out[start:stop], yp)

    parallel_ranges(images, N)
    return out


def winograd_backward(dout, x, w, pad, dx=None):
    """dw (F, C, 3, 3) of ``winograd_forward``, and dx (N, C, H, W) written into ``dx`` unless None."""
    N, C, H, W = x.shape
    F = w.shape[0]
    pad_h, pad_w = pad
    tH, tW = _tiles(dout.shape[2], dout.shape[3])
    T = tH * tW
    U = filter_transform(w)  # (16, F, C)
    chunk = _chunk_size(C, F, T, x.itemsize)

    def images(lo, hi):  # one thread's share; returns its part of dU transposed, (16, C, F)
        dU_T = np.zeros((16, C, F), dtype=x.dtype)
        views = _buffers(F, C, T, chunk, x.dtype)
        xp = np.zeros((2 * tH + 2, 2 * tW + 2, C), dtype=x.dtype)
        yp = np.zeros((2 * tH, 2 * tW, F), dtype=x.dtype)  # zero beyond the edge, stays so
        dxp = np.empty_like(xp) if dx is not None else None
        for start in range(lo, hi, chunk):
            stop = min(start + chunk, hi)
            V, dM = views(stop - start)
            _input_transform_kernel(x[start:stop], pad_h, pad_w, tH, tW, V, xp)
            _output_transform_adjoint_kernel(dout[start:stop], tH, tW, dM, yp)
            dU_T += V.transpose(0, 2, 1) @ dM    # 16 x (C, tiles) @ (tiles, F) -> (C, F)
            if dx is not None:
                np.matmul(dM, U, out=V)           # dV: 16 x (tiles, F) @ (F, C), over V
                _input_transform_adjoint_kernel(V, pad_h, pad_w, tH, tW, dx[start:stop], dxp)
        return dU_T

    dU = sum(parallel_ranges(images, N)).transpose(0, 2, 1)   # (16, F, C)
    return filter_transform_adjoint(dU)
