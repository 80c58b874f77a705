{{- define "common.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .top.Release.Name }}
app.kubernetes.io/part-of: {{ .top.Chart.Name }}
{{- with .top.Values.global.region }}
topology.example/region: {{ . }}
{{- end }}
{{- end -}}
