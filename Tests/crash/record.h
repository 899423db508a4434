/* The record log written by record.so and read by crashimages. */
#include <stdint.h>

#define REC_MAGIC 0x44524352u  /* "RCRD" */

enum {
    REC_WRITE = 1,  /* len bytes of data follow */
    REC_FLUSH = 2,  /* fsync, fdatasync, syncfs or sync of the image */
    REC_RANGE = 3,  /* sync_file_range: recorded, but no durability barrier */
};

struct rec {
    uint32_t magic, type;
    uint64_t seq;     /* order of writes and flush starts, across threads */
    uint64_t offset, len;
    int64_t t0;       /* CLOCK_MONOTONIC ns: write returned / flush started */
    int64_t t1;       /* flush returned */
    int64_t result;   /* flush: 0, or -errno */
};
