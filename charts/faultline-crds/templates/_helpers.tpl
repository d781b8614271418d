{{/* Labels of every object of this chart (merged into the CRDs' own labels). */}}
{{- define "faultline-crds.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: faultline
{{- with .Values.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Annotations of every CRD. */}}
{{- define "faultline-crds.annotations" -}}
{{- if .Values.keep }}
helm.sh/resource-policy: keep
{{- end }}
{{- if .Values.argocd.annotations }}
argocd.argoproj.io/sync-options: Prune=false,ServerSideApply=true
{{- end }}
{{- with .Values.annotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
One CRD from a file under files/: its own metadata kept, the chart's labels and annotations
added. The files are the generated CRDs as they are (a test keeps them in sync).
*/}}
{{- define "faultline-crds.render" -}}
{{- $root := index . 0 -}}
{{- $crd := index . 1 -}}
{{- $meta := $crd.metadata -}}
{{- $labels := merge (include "faultline-crds.labels" $root | fromYaml) ($meta.labels | default dict) -}}
{{- $_ := set $meta "labels" $labels -}}
{{- $annotations := merge (include "faultline-crds.annotations" $root | fromYaml | default dict) ($meta.annotations | default dict) -}}
{{- if $annotations }}
{{- $_ := set $meta "annotations" $annotations -}}
{{- end }}
{{- toYaml $crd }}
{{- end }}
