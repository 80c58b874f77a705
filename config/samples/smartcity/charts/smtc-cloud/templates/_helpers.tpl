{{/*
Helpers of the smtc-cloud chart. Not rendered on their own (the name starts with "_").
*/}}

{{/* Labels for selectors: stable for the life of a release (Deployment selectors are immutable). */}}
{{- define "smtc-cloud.selectorLabels" -}}
app.kubernetes.io/name: web
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels for every object of the chart. */}}
{{- define "smtc-cloud.labels" -}}
{{ include "smtc-cloud.selectorLabels" . }}
app.kubernetes.io/part-of: smartcity
app.kubernetes.io/component: cloud
{{- with .Values.image.tag }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
{{- end }}
