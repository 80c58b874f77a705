{{/* The object name: trimmed and cut as Helm charts do. */}}
{{- define "basics.name" -}}
{{- .Values.name | trunc 20 | trimSuffix "-" | lower -}}
{{- end -}}

{{- define "basics.labels" -}}
app: {{ include "basics.name" . }}
chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "." "_" }}
{{- range $k, $v := .Values.labels }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end -}}
