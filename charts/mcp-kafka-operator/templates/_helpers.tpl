{{/* The release's objects are named after it, cut to a DNS label. */}}
{{- define "mko.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mko.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mko.labels" -}}
{{ include "mko.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "mko.serviceAccountName" -}}
{{- default (include "mko.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The operator config file: the chart's values, with the sidecar image defaulted to this release's version. */}}
{{- define "mko.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- if not $config.sidecar.image -}}
{{- $_ := set $config.sidecar "image" (printf "ghcr.io/mcpkafka/mcp-kafka-sidecar:%s" .Chart.AppVersion) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}
