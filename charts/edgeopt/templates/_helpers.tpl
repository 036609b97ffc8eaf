{{/* Chart name, overridable. */}}
{{- define "edgeopt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name when it already says edgeopt. */}}
{{- define "edgeopt.fullname" -}}
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

{{- define "edgeopt.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "edgeopt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: edgeopt
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "edgeopt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edgeopt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "edgeopt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "edgeopt.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest; the tag defaults to appVersion. */}}
{{- define "edgeopt.image" -}}
{{- $img := index . 0 }}{{- $root := index . 1 }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{/* The Triton URL the operator uses when a spec has none. */}}
{{- define "edgeopt.tritonURL" -}}
{{- if .Values.operator.tritonURL }}
{{- .Values.operator.tritonURL }}
{{- else if .Values.triton.enabled }}
{{- printf "http://%s-triton.%s.svc:%v" (include "edgeopt.fullname" .) .Release.Namespace .Values.triton.service.httpPort }}
{{- end }}
{{- end }}

{{/* The labels the operator puts on converter Job Pods (edgeopt/operator/resources.py model_labels). */}}
{{- define "edgeopt.converterSelector" -}}
app.kubernetes.io/managed-by: edgeopt
app.kubernetes.io/name: edgeopt-converter
app.kubernetes.io/component: converter
{{- end }}

{{/* Every converter image a Job may run: the chart's own, then tenancy.allowedConverterImages. */}}
{{- define "edgeopt.converterImages" -}}
{{- $own := include "edgeopt.image" (list .Values.converter.image .) }}
{{- toJson (prepend (without .Values.tenancy.allowedConverterImages $own) $own) }}
{{- end }}

{{/* The Service in front of Triton (namespace/name) whose every endpoint the operator loads. */}}
{{- define "edgeopt.tritonService" -}}
{{- if .Values.operator.tritonService }}
{{- .Values.operator.tritonService }}
{{- else if .Values.triton.enabled }}
{{- printf "%s/%s-triton" .Release.Namespace (include "edgeopt.fullname" .) }}
{{- end }}
{{- end }}

{{/* Whether the operator sets the readiness gate on that Service's Pods. */}}
{{- define "edgeopt.tritonReadinessGate" -}}
{{- if .Values.triton.enabled }}{{ .Values.triton.readinessGate }}{{ else }}{{ .Values.operator.tritonReadinessGate }}{{ end }}
{{- end }}
