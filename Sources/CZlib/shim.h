// zlib, for gzipped data files (MNIST .gz, CSV .gz).
#include <zlib.h>
