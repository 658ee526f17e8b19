/// im2col and its adjoint for the general (grouped, strided, dilated) convolution path.

extension Conv2dKernels {
    // MARK: im2col

    /// col[(ci * KH + ky) * KW + kx, oy * OW + ox] = x[ci, oy*s - p + ky*d, ox*s - p + kx*d] (0 outside).
    static func im2col(_ g: ConvGeometry, x: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>) {
        let (H, W, OH, OW, s) = (g.height, g.width, g.outHeight, g.outWidth, g.stride)
        let outHW = OH * OW
        for ci in 0..<g.inPerGroup {
            let xc = x + ci * H * W
            for ky in 0..<g.kernelH {
                let rowOffset = ky * g.dilation - g.padding
                let oyRange = validRange(out: OH, in: H, stride: s, offset: rowOffset)
                for kx in 0..<g.kernelW {
                    let colOffset = kx * g.dilation - g.padding
                    let oxRange = validRange(out: OW, in: W, stride: s, offset: colOffset)
                    let dst = col + ((ci * g.kernelH + ky) * g.kernelW + kx) * outHW
                    dst.update(repeating: 0, count: outHW)
                    if oxRange.isEmpty { continue }
                    for oy in oyRange {
                        let src = xc + (oy * s + rowOffset) * W + colOffset
                        let d = dst + oy * OW
                        if s == 1 {
                            for ox in oxRange { d[ox] = src[ox] }
                        } else {
                            for ox in oxRange { d[ox] = src[ox * s] }
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of im2col: dx[ci, iy, ix] += col[...] for every patch position that read it.
    static func col2im(_ g: ConvGeometry, col: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        let (H, W, OH, OW, s) = (g.height, g.width, g.outHeight, g.outWidth, g.stride)
        let outHW = OH * OW
        for ci in 0..<g.inPerGroup {
            let dxc = dx + ci * H * W
            for ky in 0..<g.kernelH {
                let rowOffset = ky * g.dilation - g.padding
                let oyRange = validRange(out: OH, in: H, stride: s, offset: rowOffset)
                for kx in 0..<g.kernelW {
                    let colOffset = kx * g.dilation - g.padding
                    let oxRange = validRange(out: OW, in: W, stride: s, offset: colOffset)
                    if oxRange.isEmpty { continue }
                    let src = col + ((ci * g.kernelH + ky) * g.kernelW + kx) * outHW
                    for oy in oyRange {
                        let d = dxc + (oy * s + rowOffset) * W + colOffset
                        let r = src + oy * OW
                        if s == 1 {
                            for ox in oxRange { d[ox] += r[ox] }
                        } else {
                            for ox in oxRange { d[ox * s] += r[ox] }
                        }
                    }
                }
            }
        }
    }
}
