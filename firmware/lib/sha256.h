/* SHA-256 (FIPS 180-4), portable C99, no allocation.
 *
 * Small on purpose: the firmware trusts a language blob only after hashing the base it patches
 * and the model it produces, so this code is part of the trust chain and must stay auditable.
 */
#ifndef PKW_SHA256_H
#define PKW_SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PKW_SHA256_DIGEST_BYTES 32u

typedef struct {
    uint32_t state[8];
    uint64_t total_bytes; /* message length so far, for the final length field */
    uint8_t block[64];    /* pending partial block */
    uint32_t block_used;
} pkw_sha256_ctx;

void pkw_sha256_init(pkw_sha256_ctx *ctx);
void pkw_sha256_update(pkw_sha256_ctx *ctx, const uint8_t *data, size_t len);
void pkw_sha256_final(pkw_sha256_ctx *ctx, uint8_t digest[PKW_SHA256_DIGEST_BYTES]);

/* One-shot convenience. */
void pkw_sha256(const uint8_t *data, size_t len, uint8_t digest[PKW_SHA256_DIGEST_BYTES]);

#ifdef __cplusplus
}
#endif

#endif /* PKW_SHA256_H */
