{{/* The chart name, overridable. */}}
{{- define "ganymede.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's objects (at most 63 characters). */}}
{{- define "ganymede.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ganymede.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ganymede.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ganymede.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ganymede.labels" -}}
helm.sh/chart: {{ include "ganymede.chart" . }}
{{ include "ganymede.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "ganymede.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ganymede.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ganymede.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding the auth token. */}}
{{- define "ganymede.authSecretName" -}}
{{- default (printf "%s-auth" (include "ganymede.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* The base URL without its trailing slash ("" for /), as the gateway normalises it. */}}
{{- define "ganymede.basePath" -}}
{{- $b := .Values.gateway.baseUrl | default "/" | trimSuffix "/" }}
{{- if and $b (not (hasPrefix "/" $b)) }}{{ printf "/%s" $b }}{{ else }}{{ $b }}{{ end }}
{{- end }}

{{/* The config file: `config` with `resourceProfiles` merged in as resource_profiles. */}}
{{- define "ganymede.configFile" -}}
{{- $c := deepCopy (.Values.config | default dict) }}
{{- if .Values.resourceProfiles }}
{{- $_ := set $c "resource_profiles" (mergeOverwrite (deepCopy (get $c "resource_profiles" | default dict)) .Values.resourceProfiles) }}
{{- end }}
{{- if $c }}{{ toYaml $c }}{{ else }}{}{{ end }}
{{- end }}

{{/*
The gateway settings given as environment, EG's names for culling, limits and users and
GANYMEDE_<OPTION> for the rest. A null value is left out, so the gateway's default (or the
config file) applies.
*/}}
{{- define "ganymede.settingsEnv" -}}
{{- $g := .Values.gateway }}
{{- $pairs := list
  (list "GANYMEDE_BASE_URL" $g.baseUrl)
  (list "GANYMEDE_DEFAULT_KERNEL_NAME" $g.defaultKernelName)
  (list "GANYMEDE_KERNEL_LAUNCH_TIMEOUT" $g.kernelLaunchTimeout)
  (list "GANYMEDE_LOG_LEVEL" $g.logLevel)
  (list "GANYMEDE_LOG_FORMAT" $g.logFormat)
  (list "GANYMEDE_METRICS_PUBLIC" $g.metricsPublic)
  (list "GANYMEDE_CLIENT_ENVS" $g.clientEnvs)
  (list "GANYMEDE_INHERITED_ENVS" $g.inheritedEnvs)
  (list "GANYMEDE_ALLOW_ORIGIN" $g.allowOrigin)
  (list "EG_CULL_IDLE_TIMEOUT" .Values.culling.idleTimeout)
  (list "EG_CULL_INTERVAL" .Values.culling.interval)
  (list "EG_CULL_CONNECTED" .Values.culling.connected)
  (list "EG_CULL_BUSY" .Values.culling.busy)
  (list "EG_MAX_KERNELS" .Values.limits.maxKernels)
  (list "EG_MAX_KERNELS_PER_USER" .Values.limits.maxKernelsPerUser)
  (list "EG_AUTHORIZED_USERS" .Values.users.authorized)
  (list "EG_UNAUTHORIZED_USERS" .Values.users.unauthorized)
}}
{{- $env := list }}
{{- range $pairs }}
{{- $v := index . 1 }}
{{- if not (kindIs "invalid" $v) }}
{{- /* Helm reads YAML numbers as float64: print whole numbers as integers, not 1e+07. */}}
{{- if and (kindIs "float64" $v) (eq $v (floor $v)) }}{{ $v = int64 $v }}{{ end }}
{{- $env = append $env (dict "name" (index . 0) "value" (toString $v)) }}
{{- end }}
{{- end }}
{{- with $env }}{{ toYaml . }}{{ end }}
{{- end }}
