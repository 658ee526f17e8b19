// OpenMPI for Swift. MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ... are macros that expand to addresses of
// global objects, which Swift cannot import: each is exposed through a static inline accessor.
#include <mpi.h>

static inline MPI_Comm nasmpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm nasmpi_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Datatype nasmpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype nasmpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype nasmpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype nasmpi_uint64(void) { return MPI_UINT64_T; }
static inline MPI_Datatype nasmpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op nasmpi_op_sum(void) { return MPI_SUM; }
static inline MPI_Op nasmpi_op_max(void) { return MPI_MAX; }
static inline MPI_Op nasmpi_op_min(void) { return MPI_MIN; }
static inline MPI_Errhandler nasmpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Status *nasmpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline int nasmpi_any_source(void) { return MPI_ANY_SOURCE; }
static inline int nasmpi_any_tag(void) { return MPI_ANY_TAG; }
static inline int nasmpi_success(void) { return MPI_SUCCESS; }
static inline int nasmpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline void *nasmpi_in_place(void) { return MPI_IN_PLACE; }
