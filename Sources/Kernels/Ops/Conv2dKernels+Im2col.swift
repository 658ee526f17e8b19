/// im2col and its adjoint for the general (grouped, strided, dilated) convolution path.

extension Conv2dKernels {
    // MARK: im2col

    /// col[(ci * KH + ky) * KW + kx, oy * OW + ox] = x[ci, oy*s - p + ky*d, ox*sw - pw + kx*d] (0 outside).
    static func im2col(_ g: ConvGeometry, x: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>) {
        let (H, W, OW, s, sw) = (g.height, g.width, g.outWidth, g.stride, g.strideW)
        let outHW = g.outHeight * OW
        for ci in 0..<g.inPerGroup {
            let xc = x + ci * H * W
            g.forEachTap { ky, kx, rowOffset, colOffset, rows, cols in
                let dst = col + ((ci * g.kernelH + ky) * g.kernelW + kx) * outHW
                dst.update(repeating: 0, count: outHW)
                guard !cols.isEmpty else { return }
                for oy in rows {
                    let (src, d) = (xc + (oy * s + rowOffset) * W + colOffset, dst + oy * OW)
                    for ox in cols { d[ox] = src[ox * sw] }
                }
            }
        }
    }

    /// The adjoint of im2col: dx[ci, iy, ix] += col[...] for every patch position that read it.
    static func col2im(_ g: ConvGeometry, col: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        let (H, W, OW, s, sw) = (g.height, g.width, g.outWidth, g.stride, g.strideW)
        let outHW = g.outHeight * OW
        for ci in 0..<g.inPerGroup {
            let dxc = dx + ci * H * W
            g.forEachTap { ky, kx, rowOffset, colOffset, rows, cols in
                guard !cols.isEmpty else { return }
                let src = col + ((ci * g.kernelH + ky) * g.kernelW + kx) * outHW
                for oy in rows {
                    let (d, r) = (dxc + (oy * s + rowOffset) * W + colOffset, src + oy * OW)
                    for ox in cols { d[ox * sw] += r[ox] }
                }
            }
        }
    }
}
