import Search
import XCTest

final class PrimitiveTests: XCTestCase {
    func testReferenceOrder() {
        XCTAssertEqual(Primitive.darts.map(\.name), [
            "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
            "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
        ])
    }

    func testLookupByNameAndUnknownNames() throws {
        XCTAssertEqual(try Primitive(name: "dil_conv_5x5"), .dilConv5x5)
        XCTAssertThrowsError(try Primitive(name: "conv_7x7")) { error in
            XCTAssertTrue("\(error)".contains("unknown operation 'conv_7x7'"))
            XCTAssertTrue("\(error)".contains("sep_conv_3x3"))
        }
    }
}
