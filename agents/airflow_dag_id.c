/*
 * airflow_dag_id.c — the DAG id the OpenMetadata Airflow plugin derives from
 * an IngestionPipeline's name (declared in airflow.h).
 *
 * Pure: no libevent, no libcurl.
 */
#include <ctype.h>
#include <stdbool.h>

#include "airflow.h"
#include "util.h"

char *
airflow_dag_id_from_name(const char *name)
{
	struct ap_buf b;
	bool in_run = false;
	const unsigned char *s;

	ap_buf_init(&b);
	for (s = (const unsigned char *)name; *s != '\0'; s++) {
		if (isascii(*s) && (isalnum(*s) || *s == '-' || *s == '_')) {
			ap_buf_addc(&b, (char)*s);
			in_run = false;
		} else if (!in_run) {
			ap_buf_addc(&b, '_');
			in_run = true;
		}
	}
	return ap_buf_steal(&b, NULL);
}
