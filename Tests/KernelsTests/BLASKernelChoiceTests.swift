import XCTest
@testable import Kernels

final class BLASKernelChoiceTests: XCTestCase {
    func testSSEFallbackIsReplacedByTheMachinesLevel() {
        XCTAssertEqual(BLAS.betterCore(than: "Prescott", simdLevel: 3), "SkylakeX")
        XCTAssertEqual(BLAS.betterCore(than: "prescott", simdLevel: 2), "Haswell")
        XCTAssertEqual(BLAS.betterCore(than: "Nehalem", simdLevel: 1), "Sandybridge")
    }

    func testDeliberateOrUnknownChoicesAreKept() {
        XCTAssertNil(BLAS.betterCore(than: "Prescott", simdLevel: 0), "an SSE-only machine keeps SSE kernels")
        XCTAssertNil(BLAS.betterCore(than: "Haswell", simdLevel: 3), "an AVX2 choice on an AVX-512 machine is OpenBLAS's own")
        XCTAssertNil(BLAS.betterCore(than: "SkylakeX", simdLevel: 3))
        XCTAssertNil(BLAS.betterCore(than: "NeoverseN1", simdLevel: 0))
        XCTAssertNil(BLAS.betterCore(than: "SomeFutureCore", simdLevel: 3), "a name not in the table is left alone")
    }

    func testDescriptionNamesTheKernelsInUse() {
        XCTAssertTrue(BLAS.kernelDescription.hasPrefix("OpenBLAS \(BLAS.coreName) kernels"))
        XCTAssert((0...3).contains(BLAS.simdLevel))
    }
}
