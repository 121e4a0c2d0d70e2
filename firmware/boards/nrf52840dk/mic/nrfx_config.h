/* nrfx configuration for the PDM microphone driver: only the PDM driver is enabled; every other
 * setting keeps the nRF52840 defaults from nrfx's own per-SoC template. */
#ifndef NRFX_CONFIG_H__
#define NRFX_CONFIG_H__

#define NRFX_PDM_ENABLED 1
#define NRFX_PDM_CONFIG_LOG_ENABLED 0

#include <templates/nrfx_config_common.h> /* from NRFX_DIR */
#include <nrfx_templates_config.h>

#endif
