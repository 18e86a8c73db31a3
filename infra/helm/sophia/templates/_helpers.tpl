{{/* Names, labels and the pieces every component shares. */}}

{{- define "sophia.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sophia.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sophia.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "api") */}}
{{- define "sophia.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sophia.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sophia.labels" -}}
helm.sh/chart: {{ include "sophia.chart" .root }}
{{ include "sophia.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: sophia
{{- end -}}

{{- define "sophia.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sophia.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image: (dict "image" .Values.image "root" $) */}}
{{- define "sophia.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* The values every component needs; fails rendering, naming the value, when one is missing. */}}
{{- define "sophia.validate" -}}
{{- if not .Values.temporal.address -}}
{{- fail "temporal.address is required: the Temporal frontend's host:port (the official chart's <release>-frontend.<namespace>.svc:7233, or Temporal Cloud's endpoint, e.g. us-east-1.aws.api.temporal.io:7233 with an API key)" -}}
{{- end -}}
{{- if not (hasPrefix "s3://" .Values.storage.url) -}}
{{- fail "storage.url is required: s3://BUCKET[/PREFIX], the storage every component shares (a local directory is not shared between pods)" -}}
{{- end -}}
{{- if and .Values.api.enabled (not .Values.api.keys.existingSecret) -}}
{{- fail "api.keys.existingSecret is required when api.enabled: the name of a Secret holding the API keys file (docs/deploy.md)" -}}
{{- end -}}
{{- if lt (int .Values.shutdownGraceSeconds) 1 -}}
{{- fail "shutdownGraceSeconds must be at least 1" -}}
{{- end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds of the workers: the shutdown grace plus the margin. */}}
{{- define "sophia.terminationGracePeriodSeconds" -}}
{{- add (int .Values.shutdownGraceSeconds) (int .Values.terminationGraceMarginSeconds) -}}
{{- end -}}

{{/* An env entry when the value is not empty: (list "NAME" value) */}}
{{- define "sophia.optionalEnv" -}}
{{- $value := index . 1 -}}
{{- if ne (toString $value) "" }}
- name: {{ index . 0 }}
  value: {{ toString $value | quote }}
{{- end -}}
{{- end -}}

{{/* Environment of every component: Temporal, the deployment, storage, logs, SOPHIA_HOME. */}}
{{- define "sophia.commonEnv" -}}
- name: TEMPORAL_ADDRESS
  value: {{ .Values.temporal.address | quote }}
{{- include "sophia.optionalEnv" (list "TEMPORAL_NAMESPACE" .Values.temporal.namespace) }}
{{- include "sophia.optionalEnv" (list "TEMPORAL_TLS" .Values.temporal.tls) }}
{{- if .Values.temporal.apiKey.existingSecret }}
- name: TEMPORAL_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.temporal.apiKey.existingSecret | quote }}
      key: {{ .Values.temporal.apiKey.key | quote }}
{{- end }}
{{- include "sophia.optionalEnv" (list "SOPHIA_DEPLOYMENT" .Values.deployment) }}
- name: SOPHIA_STORAGE
  value: {{ .Values.storage.url | quote }}
{{- with .Values.storage.s3 }}
{{- include "sophia.optionalEnv" (list "SOPHIA_S3_ENDPOINT" .endpoint) }}
{{- include "sophia.optionalEnv" (list "SOPHIA_S3_REGION" .region) }}
{{- include "sophia.optionalEnv" (list "SOPHIA_S3_FORCE_PATH_STYLE" .forcePathStyle) }}
{{- include "sophia.optionalEnv" (list "SOPHIA_S3_PART_SIZE_MB" .partSizeMb) }}
{{- include "sophia.optionalEnv" (list "SOPHIA_S3_QUEUE_SIZE" .queueSize) }}
{{- if .credentials.existingSecret }}
- name: SOPHIA_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .credentials.existingSecret | quote }}
      key: {{ .credentials.accessKeyIdKey | quote }}
- name: SOPHIA_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .credentials.existingSecret | quote }}
      key: {{ .credentials.secretAccessKeyKey | quote }}
{{- end }}
{{- end }}
{{- include "sophia.optionalEnv" (list "SOPHIA_LOG_FORMAT" .Values.log.format) }}
{{- include "sophia.optionalEnv" (list "SOPHIA_LOG_LEVEL" .Values.log.level) }}
{{- include "sophia.optionalEnv" (list "OTEL_EXPORTER_OTLP_ENDPOINT" .Values.tracing.otlpEndpoint) }}
- name: SOPHIA_HOME
  value: /var/lib/sophia
{{- end -}}

{{/* Environment of a worker: metrics, shutdown grace, scratch. */}}
{{- define "sophia.workerEnv" -}}
- name: SOPHIA_METRICS_PORT
  value: {{ .Values.metrics.port | toString | quote }}
- name: SOPHIA_SHUTDOWN_GRACE
  value: {{ printf "%ds" (int .Values.shutdownGraceSeconds) | quote }}
- name: SOPHIA_SCRATCH
  value: /var/tmp/sophia
{{- end -}}

{{/* Writable folders under a read-only root file system: /tmp (tsx's cache, the OS temp folder) and SOPHIA_HOME. */}}
{{- define "sophia.baseVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /var/lib/sophia
{{- end -}}

{{- define "sophia.baseVolumes" -}}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
{{- end -}}

{{- define "sophia.workerPodAnnotations" -}}
{{- if .Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | toString | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/* An httpGet probe: (dict "probe" .Values.x.readinessProbe "path" "/health" "port" "http") */}}
{{- define "sophia.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end -}}
